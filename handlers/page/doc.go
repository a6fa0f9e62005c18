// Package page implements the handlers that page humans: page.webhook (a PagerDuty Events API v2
// endpoint), page.teams (a Microsoft Teams channel, through a Workflows or incoming webhook) and
// page.email (mail over SMTP). Each is configured under handlers.page; unconfigured, each stays
// registered so that rules load, and Build fails with bad_param ("handlers.page.X is not
// configured").
//
// Contract shared by the three:
//   - The class is notify (pages go out while responder is paused); the default approval is none;
//     the target is qualified by the incident (Spec.TargetPerIncident), so pages of different
//     incidents neither queue behind each other nor share a cooldown.
//   - Spec.ResolveParams makes the engine run the handler once more when the incident resolves,
//     for each page of it that was sent: page.webhook sends the resolve event, page.teams and
//     page.email send a "resolved" card or email (their status param).
//   - A failure the engine may retry later from the store (handlers.Error reasons server_error and
//     timeout) comes only after the handler's own retries (Options.Retries, exponential backoff,
//     handlers/delivery's Policy). Check cannot re-confirm anything and returns
//     handlers.ErrNotCheckable. Secrets (routing key, webhook URL, SMTP password) appear in no log
//     line, target, scope, result or error, even when the other end echoes them.
//
// page.webhook:
//   - Do POSTs {"routing_key", "event_action", "dedup_key", "payload": {"summary", "source",
//     "severity", "custom_details"}, "links": [{"href"}], "client": "responder"}; a resolve carries
//     neither payload nor links. The dedup key is the dedup_key param, else
//     "responder-incident-<id>" from handlers.Invocation.IncidentID, so a trigger and its resolve,
//     and every retry, name the same alert. The summary is cut to 1024 characters, dedup_key may
//     have 255. Target is "page:<dedup_key>", or "page:incident"; scope the endpoint's host[:port].
//   - Every attempt carries Content-Type application/json, User-Agent responder/<version> and
//     Idempotency-Key (handlers.Invocation.IdempotencyKey, when set).
//   - Answers are classified by handlers/delivery, the rule shared with http.request and the
//     Patroni client. 2xx succeeds (PagerDuty answers 202); the result detail is the event action,
//     dedup key, status and the first 256 bytes of the response, sanitised. 429, 5xx, timed-out
//     attempts (Options.Timeout each) and connection errors are retried Options.Retries times with
//     exponential backoff (a Retry-After on a 429 or 503 replaces it; over a minute it fails at
//     once), then fail with a *handlers.Error of reason server_error or timeout, so the engine
//     can send the page later; a 429 that gave a Retry-After ends as client_error instead. Other
//     statuses (redirects included: they are never followed) fail at once with client_error.
//   - The routing key goes in the request body only.
//
// page.teams:
//   - Do POSTs {"type": "message", "attachments": [{"contentType":
//     "application/vnd.microsoft.card.adaptive", "contentUrl": null, "content": an Adaptive Card
//     1.4}]} to handlers.page.teams.url. The card's body is a heading TextBlock ("FIRING: " or
//     "RESOLVED: " and the title param, default the alert's name), a TextBlock (the text param,
//     default the alert's summary annotation), a FactSet (incident, rule, alert, status, started,
//     resolved, up to 10 labels) and, when the store is at hand (Incidents), the incident's other
//     actions with their states; its actions are Action.OpenUrl buttons for the alert's
//     runbook_url and dashboard_url annotations, its source and the links param, only absolute
//     http(s) URLs. Every part is bounded; the card stays under Teams's 28 KB.
//   - Answers are classified as page.webhook's, with one addition: a legacy connector answers
//     "200 OK" with "Webhook message delivery failed with error: Microsoft Teams endpoint returned
//     HTTP error N" in the body; that is the status N (a 429 is retried, a 413 fails).
//   - Teams webhooks cannot edit or delete a message: the resolved card is a new message.
//   - Target is "teams:<host>"; scope the URL's host[:port]. The URL's path and query (an incoming
//     webhook's path, a Workflows URL's sig=) never leave the request.
//
// page.email:
//   - One email per action: the firing email, then (ResolveParams) the resolved one. Each attempt
//     connects to handlers.page.email.smtp, EHLO, STARTTLS (verifying the server's certificate for
//     the host; a server that does not offer it fails with client_error and nothing is sent; only
//     a loopback host may go without), AUTH PLAIN (only when a username is set; net/smtp refuses
//     it in clear to anything but localhost), MAIL FROM, RCPT TO for every recipient, DATA, QUIT.
//     A recipient refused means RSET and nothing sent: an email goes to all its recipients or none.
//   - The message: From, To, Subject ("[FIRING] " or "[RESOLVED] " and the subject param, default
//     the alert's name, incident and rule; RFC 2047 Q-encoded when not ASCII), Date, Message-ID,
//     References (one id per incident, never sent, so that mail clients thread the incident's
//     emails), MIME-Version, Content-Type text/plain; charset=utf-8, Content-Transfer-Encoding
//     quoted-printable, Auto-Submitted auto-generated, X-Mailer; folded at 78 characters; CRLF
//     line ends. The body is the body param (default the alert's summary) and the incident's
//     facts, links and actions.
//   - The Message-ID is <KEY.HASH@DOMAIN>: KEY the action's idempotency key, HASH of the incident,
//     transition, sender, recipients and subject, DOMAIN the sender's. Every attempt of an action
//     sends the same Message-ID, so a receiver can drop a duplicate (SMTP cannot promise exactly
//     once: a connection lost after the final "." leaves the sender not knowing whether the server
//     took the message, and the retry sends it again).
//   - Replies: 4xx (and timeouts, broken connections) are retried, then server_error or timeout;
//     5xx, a certificate that does not verify and a missing STARTTLS or AUTH PLAIN fail at once
//     with client_error. Target is "email:" and the recipients' addresses, sorted; scope host:port.
//
// page.teams and page.email remember, per handler and for this process, the idempotency keys they
// delivered: running the same action again answers the first result without sending (the engine
// never re-runs a delivered action; this guards against a second call all the same).
package page
