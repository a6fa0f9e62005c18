package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sre/responder/bus/bustest"
	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/store/pgtest"
)

type cliDeadLetter struct {
	ID         int64      `json:"id"`
	MsgID      string     `json:"msg_id"`
	Reason     string     `json:"reason"`
	ReplayedAt *time.Time `json:"replayed_at"`
}

// `responder dead-letters list|replay` against a running responder: a message dead-lettered for
// real is listed (table and JSON), replayed by id (once), and its replay's own dead letter with
// --all; bad input exits 2, a refusal 1.
func TestDeadLettersCLI(t *testing.T) {
	srv := bustest.Start(t)
	dir := setup(t, newSink(t, 0), pgtest.NewDatabase(t), "nats:\n  url: "+srv.URL()+"\nbus:\n  replicas: 1\n")
	p := serve(t, dir, t.TempDir(), freePort(t))
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.PublishMsg(ctx, signedMsg("garbage-1", []byte("{not json"))); err != nil {
		t.Fatal(err)
	}
	token := "--api-token-file=" + filepath.Join(dir, "api-token")
	cli := func(args ...string) (string, int) {
		return run(t, append([]string{"dead-letters", args[0], "--url=" + p.base, token}, args[1:]...)...)
	}
	list := func(args ...string) []cliDeadLetter {
		out, code := cli(append([]string{"list", "--output=json"}, args...)...)
		var l struct {
			Items []cliDeadLetter `json:"items"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &l) != nil {
			t.Fatalf("list: exit %d: %s", code, out)
		}
		return l.Items
	}
	var dls []cliDeadLetter
	testwait.Until(t, 20*time.Second, "the dead letter", func() bool { dls = list(); return len(dls) == 1 })
	if dls[0].MsgID != "garbage-1" || dls[0].Reason != "undecodable" || dls[0].ReplayedAt != nil {
		t.Fatalf("listed %+v", dls)
	}
	id := fmt.Sprint(dls[0].ID)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"table", []string{"list"}, 0, "ID  CREATED"},
		{"table row", []string{"list"}, 0, "garbage-1"},
		{"replay needs ids or --all", []string{"replay"}, 2, "--all"},
		{"ids and --all", []string{"replay", "--all", id}, 2, "not both"},
		{"malformed id", []string{"replay", "x1"}, 2, `"x1" is not a dead letter id`},
		{"unknown id", []string{"replay", "999999"}, 1, "no such dead letter: 999999"},
		{"replay", []string{"replay", "--by=alice", id}, 0, "dead letter " + id + " replayed as garbage-1/replay-" + id},
		{"replay again", []string{"replay", id}, 1, "already replayed at"},
	} {
		out, code := cli(tc.args...)
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("%s: exit %d (want %d), output lacks %q:\n%s", tc.name, code, tc.code, tc.want, out)
		}
	}
	if out, code := run(t, "dead-letters", "list", "--url="+p.base); code != 1 || !strings.Contains(out, "HTTP 401") {
		t.Errorf("list without a token: exit %d: %s", code, out)
	}
	if out, code := run(t, "dead-letters", "list", "--url="+p.base, "--api-token-file=/nonexistent"); code != 2 {
		t.Errorf("unreadable token file: exit %d: %s", code, out)
	}
	// Still undecodable: the replay is a new dead letter, which --all replays.
	testwait.Until(t, 20*time.Second, "the replay's dead letter", func() bool { dls = list("--unreplayed"); return len(dls) == 1 })
	if dls[0].MsgID != "garbage-1/replay-"+id {
		t.Fatalf("unreplayed after the replay: %+v", dls)
	}
	if out, code := cli("replay", "--all"); code != 0 || !strings.Contains(out, fmt.Sprintf("dead letter %d replayed", dls[0].ID)) {
		t.Fatalf("replay --all: exit %d: %s", code, out)
	}
}
