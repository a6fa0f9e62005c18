// Package slack is responder's Slack integration (the slack section of the config).
//
// Outbound, Run keeps one Block Kit message per incident in slack.channel in step with the store:
// it is posted (chat.postMessage) when the incident fires, updated in place (chat.update, channel
// and ts kept in the slack_messages table) whenever its rendering changes (actions planned,
// awaiting approval with Approve and Deny buttons, running, finished), and answered in its thread
// with the resolution notice (time to detect, time to recover). Run is store-driven: it polls, and
// Kick makes it look at once, so a Slack outage or a 429 delays a message and never loses it.
// Calls are rate limited and a 429 stops every call until its Retry-After has passed; the engine
// never waits on Slack. Run on the leader only.
//
// Inbound, CommandsHandler (POST /slack/commands: /responder approve|deny|list|status|pause|
// resume|help) and InteractionsHandler (POST /slack/interactions: the buttons) verify Slack's v0
// signature over the raw body, with the timestamp within five minutes, before parsing anything;
// a failure is a 401 with no side effect but an audit row. A verified request that changes state
// (approve, deny, pause, resume, a click) is recorded by its signature in the store's replay cache,
// shared by the replicas; the same request received again inside the window is refused, audited
// (reason replayed) and changes nothing (refuseReplay). RunSocketMode feeds the same code from
// Socket Mode. Decisions go through the engine's Decide (Options.Approver), the API's path
// (two-person rule, approvals TTL, replays: a double click is a replay, the action runs once) and
// are recorded as "slack:<user id>" via "slack". Only slack.approvers (users, or members of user groups, read with
// usergroups.users.list and cached) may decide, pause or resume; others get an ephemeral refusal,
// audited. Answers are ephemeral: in the response body for commands, through response_url for
// buttons.
//
// The page.slack handler (PageHandler) posts a page mentioning a user group, once per action.
package slack
