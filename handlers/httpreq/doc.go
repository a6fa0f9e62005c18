// Package httpreq implements the http.request handler: it calls an HTTP endpoint on an allow-listed
// host, for example to re-trigger an Airflow DAG or update a status page.
//
// Contract:
//   - The URL's scheme (http or https) and host may not be templated: the text before the first
//     "{{" must hold a whole "scheme://host[:port]/". The host must be in Options.AllowedHosts,
//     compared case-insensitively with host or host:port exactly as listed (an explicit default
//     port equals no port). Userinfo in the URL is refused; put credentials in headers. These are
//     checked at rule load (ValidateStatic) and again on the rendered URL (Build), which also
//     refuses ".." path segments; Build failures carry reason bad_param.
//   - Every attempt carries Idempotency-Key (the engine's key from handlers.IdempotencyKey, when
//     set; rules may not override it) and User-Agent responder/<version>; a body that is a JSON
//     object or array gets Content-Type application/json unless the rule sets one.
//   - Answers are classified by handlers/delivery, the rule shared with page.webhook and the
//     Patroni client. 2xx succeeds; the result detail is the status and the first 256 bytes of the
//     response body, sanitised. Other 4xx fail at once with reason client_error. 429, 5xx and
//     connection errors are retried Options.Retries times with exponential backoff; a Retry-After
//     on a 429 or 503 replaces the backoff (when it fits the deadline; over a minute it fails at
//     once). Then they fail with server_error, except a 429 that gave a Retry-After: client_error.
//     Timed-out attempts (Options.Timeout each) likewise end in timeout.
//   - Redirects are followed only to allow-listed http(s) hosts; any other redirect fails with
//     client_error. At most 64 KiB of a response is read. Header values and bodies are never
//     logged. Check cannot re-confirm anything and returns handlers.ErrNotCheckable.
//   - The url, header values and body may hold secret references ({{ secret("NAME") }}, kept in
//     the rendered params): Do resolves them through Options.Secrets, once per Do, and scrubs the
//     values ("<secret NAME>") from its result, errors and logs. The rules package escapes what
//     templates render into the url (Param.URL), so a rendered "/" arrives as %2F and stays in its
//     segment; the ".." check looks at the escaped path's segments.
//   - Targets, errors and logs never show a URL's query, fragment or userinfo, nor the path of a
//     secret-bearing host (handlers.DefaultSecretPathHosts and Options.SecretPathHosts) or a path
//     holding a secret reference (handlers.RedactedPath instead).
package httpreq
