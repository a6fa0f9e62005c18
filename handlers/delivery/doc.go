// Package delivery sends the HTTP requests of the handlers that call out over HTTP (http.request,
// page.webhook and the Patroni client of the postgres handlers), so that they retry, wait, read,
// drain and classify answers the same way.
//
// Classify is the one rule from an HTTP status to an outcome reason (vocab.Reason):
//
//	2xx                                    delivered
//	429 Too Many Requests, no Retry-After  server_error, retried
//	429 with a valid Retry-After           client_error, retried after the Retry-After
//	5xx                                    server_error, retried (a 503's Retry-After is honoured)
//	anything else (1xx, 3xx, other 4xx)    client_error, not retried
//
// A 429 is retried like a 5xx either way. Without Retry-After it cannot be told apart from load
// shedding and ends as server_error, like a 503: for a notify action the engine tries again later.
// With a Retry-After the server is pacing this client and has said when to come back; when
// responder cannot (the wait is over MaxRetryAfter, so it fails at once, or the answer is still 429
// when the retries are spent) the problem is responder's own request rate: client_error.
//
// Contract:
//   - Send sends one request, reads at most a given number of bytes of the answer, then drains a
//     bounded rest (MaxBody) and closes the body, so that the connection can be reused and a huge
//     or endless answer cannot hold the caller. Response.Detail is the status and an excerpt of
//     the body (MaxExcerpt bytes on one printable line, see handlers.Excerpt), scrubbed of secrets
//     before it is cut, so that no prefix of a secret survives the cut.
//   - A Retry-After (delay-seconds or an HTTP-date, see ParseRetryAfter) on a 429 or a 503
//     replaces the backoff when it is positive; one longer than MaxRetryAfter ends the retries at
//     once, and the error says so.
//   - ClassifyError classifies an attempt that got no answer. When the delivery's own context is
//     done (its deadline, a cancellation, an interruption such as a pause) the reason is that of
//     its cause (handlers.ReasonOf) and nothing is retried; an attempt that timed out is timeout,
//     any other transport error server_error, both retried.
//   - Policy.Retry runs the attempts: Retries retries after the first; waits doubling from Backoff
//     with ±20% jitter up to MaxBackoff, or the server's Retry-After; no retry whose wait would end
//     past the context's deadline; waits that end when the context does (clock.Sleep). It returns
//     the last attempt's error, whose reason it keeps when a wait is refused or cut short.
//   - Nothing here logs or returns a header value, a body or a URL of its own accord: callers
//     redact transport errors (net/http quotes the whole URL) and scrub what they pass on.
package delivery
