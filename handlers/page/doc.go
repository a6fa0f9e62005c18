// Package page implements the page.webhook handler: it pages a human through a PagerDuty Events
// API v2 endpoint (handlers.page.webhook: url and routing key), triggering or resolving one alert
// per incident.
//
// Contract:
//   - The class is notify (pages go out while responder is paused); the default approval is none.
//     Target is "page:<dedup_key>", or "page:incident" when the dedup key comes from the incident;
//     scope is the endpoint's host[:port].
//   - Do POSTs {"routing_key", "event_action", "dedup_key", "payload": {"summary", "source",
//     "severity", "custom_details"}, "links": [{"href"}], "client": "responder"}; a resolve carries
//     neither payload nor links. The dedup key is the dedup_key param, else
//     "responder-incident-<id>" from handlers.IncidentID, so a trigger and its resolve, and every
//     retry, name the same alert. The summary is cut to 1024 characters, dedup_key may have 255.
//   - Every attempt carries Content-Type application/json, User-Agent responder/<version> and
//     Idempotency-Key (handlers.IdempotencyKey, when set).
//   - Answers are classified by handlers/delivery, the rule shared with http.request and the
//     Patroni client. 2xx succeeds (PagerDuty answers 202); the result detail is the event action,
//     dedup key, status and the first 256 bytes of the response, sanitised. 429, 5xx, timed-out
//     attempts (Options.Timeout each) and connection errors are retried Options.Retries times with
//     exponential backoff (a Retry-After on a 429 or 503 replaces it; over a minute it fails at
//     once), then fail with a *handlers.Error of reason server_error or timeout, so the engine
//     can send the page later; a 429 that gave a Retry-After ends as client_error instead. Other
//     statuses (redirects included: they are never followed) fail at once with client_error.
//   - The routing key goes in the request body only: it never appears in a log line, target, scope,
//     result or error, even when the endpoint echoes it back.
//   - With an empty url or routing key (or an invalid url) the handler stays registered so rules
//     load, and Build fails with bad_param "handlers.page.webhook is not configured".
//   - Check cannot re-confirm anything and returns handlers.ErrNotCheckable.
package page
