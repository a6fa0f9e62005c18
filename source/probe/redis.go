package probe

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/responder-sre/responder/config"
)

// redisCheck sends AUTH (when a password is set) and PING over RESP and expects +OK and +PONG.
// The value is the latency of the whole exchange, connect included. With llen it sends SELECT
// (when db is not 0) and LLEN instead of PING: the value is the list's length (0 for a missing
// key), such as the depth of a Celery queue.
type redisCheck struct {
	addr     string
	password config.Secret
	llen     string
	db       int
}

func newRedisCheck(c *config.RedisProbe) redisCheck {
	return redisCheck{addr: c.Address, password: c.Password, llen: c.LLEN, db: c.DB}
}

func (c redisCheck) instance() string { return c.addr }

func (c redisCheck) check(ctx context.Context) Measurement {
	start := time.Now()
	fail := func(err error) Measurement {
		return Measurement{Value: nanValue, Err: fmt.Errorf("redis %s: %w", c.addr, err), Duration: time.Since(start)}
	}
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return fail(err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	r := bufio.NewReaderSize(conn, 512)
	if pw := c.password.Value(); pw != "" {
		if _, err := conn.Write(respCommand("AUTH", pw)); err != nil {
			return fail(fmt.Errorf("AUTH: %w", err))
		}
		if err := expectReply(r, "OK"); err != nil {
			return fail(fmt.Errorf("AUTH: %w", err)) // the reply never contains the password
		}
	}
	if c.llen != "" {
		n, err := c.listLength(conn, r)
		if err != nil {
			return fail(err)
		}
		return Measurement{Value: float64(n), Duration: time.Since(start)}
	}
	if _, err := conn.Write(respCommand("PING")); err != nil {
		return fail(fmt.Errorf("PING: %w", err))
	}
	if err := expectReply(r, "PONG"); err != nil {
		return fail(fmt.Errorf("PING: %w", err))
	}
	d := time.Since(start)
	return Measurement{Value: d.Seconds(), Duration: d}
}

// listLength selects c.db (unless 0) and returns LLEN c.llen.
func (c redisCheck) listLength(conn net.Conn, r *bufio.Reader) (int64, error) {
	if c.db != 0 {
		if _, err := conn.Write(respCommand("SELECT", strconv.Itoa(c.db))); err != nil {
			return 0, fmt.Errorf("SELECT: %w", err)
		}
		if err := expectReply(r, "OK"); err != nil {
			return 0, fmt.Errorf("SELECT %d: %w", c.db, err)
		}
	}
	if _, err := conn.Write(respCommand("LLEN", c.llen)); err != nil {
		return 0, fmt.Errorf("LLEN: %w", err)
	}
	line, err := readLine(r)
	if err != nil {
		return 0, fmt.Errorf("LLEN: %w", err)
	}
	n, err := parseInteger(line)
	if err != nil {
		return 0, fmt.Errorf("LLEN %s: %w", sanitize(c.llen), err)
	}
	return n, nil
}

// parseInteger reads a RESP integer reply (":42"); an error reply ("-WRONGTYPE ...") becomes the
// error.
func parseInteger(line string) (int64, error) {
	if rest, ok := strings.CutPrefix(line, ":"); ok {
		n, err := strconv.ParseInt(rest, 10, 64)
		if err == nil && n >= 0 {
			return n, nil
		}
	}
	if strings.HasPrefix(line, "-") {
		return 0, fmt.Errorf("server error: %s", sanitize(line[1:]))
	}
	return 0, fmt.Errorf("unexpected reply %q, want a length", sanitize(line))
}

// respCommand encodes a command as a RESP array of bulk strings.
func respCommand(args ...string) []byte {
	var b strings.Builder
	b.WriteString("*" + strconv.Itoa(len(args)) + "\r\n")
	for _, a := range args {
		b.WriteString("$" + strconv.Itoa(len(a)) + "\r\n" + a + "\r\n")
	}
	return []byte(b.String())
}

// expectReply reads one reply line and wants the simple string want ("+OK"). An error reply
// ("-NOAUTH ...") becomes the error.
func expectReply(r *bufio.Reader, want string) error {
	line, err := readLine(r)
	if err != nil {
		return err
	}
	return parseReply(line, want)
}

// readLine reads one CRLF-terminated line of at most 512 bytes.
func readLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return "", errors.New("reply line too long")
	}
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(line), "\r\n"), nil
}

// parseReply checks one RESP reply line against the simple string want.
func parseReply(line, want string) error {
	switch {
	case line == "+"+want:
		return nil
	case strings.HasPrefix(line, "-"):
		return fmt.Errorf("server error: %s", sanitize(line[1:]))
	default:
		return fmt.Errorf("unexpected reply %q, want +%s", sanitize(line), want)
	}
}

// sanitize bounds and cleans text from the network before it goes into a reason.
func sanitize(s string) string {
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return strings.ToValidUTF8(strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s), "?")
}
