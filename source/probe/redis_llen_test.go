package probe

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

func TestParseInteger(t *testing.T) {
	for _, tc := range []struct {
		line string
		want int64
		err  string
	}{
		{":0", 0, ""},
		{":42", 42, ""},
		{":9223372036854775807", 9223372036854775807, ""},
		{":-1", 0, `unexpected reply ":-1"`},
		{":", 0, `unexpected reply ":"`},
		{":12a", 0, `unexpected reply ":12a"`},
		{"-WRONGTYPE Operation against a key holding the wrong kind of value", 0, "server error: WRONGTYPE"},
		{"+OK", 0, `unexpected reply "+OK", want a length`},
		{"$3", 0, `unexpected reply "$3"`},
		{":1\x00\x1b[31m", 0, `unexpected reply ":1??[31m"`},
	} {
		n, err := parseInteger(tc.line)
		if tc.err == "" && (err != nil || n != tc.want) {
			t.Errorf("parseInteger(%q) = %d, %v; want %d", tc.line, n, err, tc.want)
		}
		if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("parseInteger(%q) = %d, %v; want an error %q", tc.line, n, err, tc.err)
		}
	}
}

// redisDo runs one command on addr as an authenticated client and returns the reply line.
func redisDo(t *testing.T, addr, password string, db int, args ...string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	cmds := [][]string{{"AUTH", password}, {"SELECT", fmt.Sprint(db)}, args}
	var line string
	for _, cmd := range cmds {
		if _, err := c.Write(respCommand(cmd...)); err != nil {
			t.Fatal(err)
		}
		if line, err = r.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	return strings.TrimSpace(line)
}

// TestRedisLLEN: the length of a list (a Celery queue) on a real redis-server, with AUTH and
// SELECT; a missing key is 0, a key of another type fails, firing_when fires on a deep queue.
func TestRedisLLEN(t *testing.T) {
	t.Parallel()
	const password = "SECRET-redis-llen"
	addr := startRedis(t, password)
	r := newRunner(t, parseProbes(t, fmt.Sprintf(`
  - {name: celery, redis: {address: %[1]q, password: %[2]q, llen: celery}}
  - {name: deep, redis: {address: %[1]q, password: %[2]q, llen: celery}, firing_when: value > 2}
  - {name: db3, redis: {address: %[1]q, password: %[2]q, llen: celery, db: 3}}
  - {name: nodb, redis: {address: %[1]q, password: %[2]q, llen: celery, db: 99}}
  - {name: string-key, redis: {address: %[1]q, password: %[2]q, llen: a-string}}
  - {name: missing, redis: {address: %[1]q, password: %[2]q, llen: "no such queue"}}
  - {name: noauth, redis: {address: %[1]q, llen: celery}}
`, addr, password)), Options{})

	check := func(probe string, ok bool, value float64, reason string) {
		t.Helper()
		res := runOnce(t, r, probe)
		measured := ok || strings.HasPrefix(reason, "firing_when") // a value, not a failed check
		if res.Success != ok || !strings.Contains(res.Reason, reason) || (measured && res.Value != value) {
			t.Errorf("%s: success %v value %v reason %q; want %v, %v, %q", probe, res.Success, res.Value, res.Reason, ok, value, reason)
		}
		if strings.Contains(res.Reason, "SECRET") {
			t.Errorf("%s: reason leaks the password: %q", probe, res.Reason)
		}
		if !measured && !isNaN(res.Value) {
			t.Errorf("%s: value %v on a failed check, want NaN", probe, res.Value)
		}
	}
	check("celery", true, 0, "")
	check("missing", true, 0, "")
	if got := redisDo(t, addr, password, 0, "RPUSH", "celery", "t1", "t2", "t3"); got != ":3" {
		t.Fatalf("RPUSH = %q", got)
	}
	if got := redisDo(t, addr, password, 3, "RPUSH", "celery", "other-db"); got != ":1" {
		t.Fatalf("RPUSH in db 3 = %q", got)
	}
	if got := redisDo(t, addr, password, 0, "SET", "a-string", "x"); got != "+OK" {
		t.Fatalf("SET = %q", got)
	}
	check("celery", true, 3, "")
	check("deep", false, 3, "firing_when value > 2 holds for value 3")
	check("db3", true, 1, "")
	check("nodb", false, 0, "SELECT 99: server error: ERR DB index is out of range")
	check("string-key", false, 0, "LLEN a-string: server error: WRONGTYPE")
	check("noauth", false, 0, "server error: NOAUTH")
	redisDo(t, addr, password, 0, "LPOP", "celery", "2")
	check("deep", true, 1, "")
}
