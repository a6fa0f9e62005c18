package delivery

import (
	"io"
	"net/http"

	"github.com/responder-sre/responder/handlers"
)

// Bounds of what is read of an answer.
const (
	// MaxBody is how many bytes of an answer a handler reads by default, and how many more Send
	// drains after what it read before it closes the body.
	MaxBody = 64 << 10
	// MaxExcerpt is how many bytes of an answer's body a result or an error keeps.
	MaxExcerpt = 256
)

// Response is an answer as Send read it. Its body is closed.
type Response struct {
	StatusCode int    // 200
	Status     string // "200 OK"
	Header     http.Header
	Body       []byte // at most the limit given to Send
	ReadErr    error  // why Body may be short: reading failed after the headers
}

// Send sends req with c and reads at most limit bytes of the answer's body (none for a limit of
// zero or less). It then reads and discards at most MaxBody more bytes and closes the body, so
// that the connection can be reused. The error is c.Do's, unchanged: it quotes the request's URL,
// and callers redact it before they keep it.
func Send(c *http.Client, req *http.Request, limit int64) (*Response, error) {
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer drain(resp.Body)
	r := &Response{StatusCode: resp.StatusCode, Status: resp.Status, Header: resp.Header}
	if limit > 0 {
		r.Body, r.ReadErr = io.ReadAll(io.LimitReader(resp.Body, limit))
	}
	return r, nil
}

// drain reads what is left of a body, up to MaxBody, and closes it.
func drain(rc io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(rc, MaxBody))
	_ = rc.Close()
}

// Excerpt is the first MaxExcerpt bytes of the body as one line of printable UTF-8, after scrub
// (nil: none) has removed the secrets from the whole body: a secret the cut goes through leaves no
// prefix behind.
func (r *Response) Excerpt(scrub func(string) string) string {
	b := r.Body
	if scrub != nil {
		b = []byte(scrub(string(b)))
	}
	return handlers.Excerpt(b, MaxExcerpt)
}

// Detail is the status followed by ": " and the Excerpt, or the status alone for an empty body.
func (r *Response) Detail(scrub func(string) string) string {
	if s := r.Excerpt(scrub); s != "" {
		return r.Status + ": " + s
	}
	return r.Status
}
