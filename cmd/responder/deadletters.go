package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/responder-sre/responder/store"
)

// Exit codes of the client commands.
const (
	exitOK      = 0
	exitFailed  = 1
	exitBadArgs = 2
)

// deadLettersCmd is `responder dead-letters list|replay`, a client of the admin API.
type deadLettersCmd struct {
	list, replay *kingpin.CmdClause
	url          *string
	tokenFile    *string
	output       *string
	timeout      *time.Duration
	unreplayed   *bool
	limit        *int
	all          *bool
	by           *string
	ids          *[]string
}

func addDeadLettersCmd(a *kingpin.Application) *deadLettersCmd {
	c := &deadLettersCmd{}
	dl := a.Command("dead-letters", "List and replay dead letters (bus messages that could not be processed) through the API.")
	c.url = dl.Flag("url", "responder's base URL.").Default("http://127.0.0.1:9095").String()
	c.tokenFile = dl.Flag("api-token-file", "File holding the API token (the read token may list; replay needs the admin token).").String()
	c.output = dl.Flag("output", "Output format: text or json.").Short('o').Default("text").Enum("text", "json")
	c.timeout = dl.Flag("timeout", "Timeout of the whole command.").Default("30s").Duration()
	c.list = dl.Command("list", "List dead letters, newest first.")
	c.unreplayed = c.list.Flag("unreplayed", "Only those not replayed yet.").Bool()
	c.limit = c.list.Flag("limit", "At most this many (0 = all).").Default("0").Int()
	c.replay = dl.Command("replay", "Publish dead letters to the bus again (after fixing what made them fail); exit 1 if any was not replayed.")
	c.all = c.replay.Flag("all", "Replay every dead letter not replayed yet (instead of naming ids).").Bool()
	c.by = c.replay.Flag("by", "Who replays, recorded in the audit trail.").String()
	c.ids = c.replay.Arg("id", "Dead letter ids.").Strings()
	return c
}

// run runs the command if cmd is one of its subcommands, bounded by --timeout; ok is false
// otherwise.
func (c *deadLettersCmd) run(ctx context.Context, cmd string, stdout, stderr io.Writer) (code int, ok bool) {
	if cmd != c.list.FullCommand() && cmd != c.replay.FullCommand() {
		return 0, false
	}
	cl, err := newAPIClient(*c.url, *c.tokenFile)
	if err != nil {
		fmt.Fprintf(stderr, "responder: %v\n", err)
		return exitBadArgs, true
	}
	ctx, cancel := context.WithTimeout(ctx, *c.timeout)
	defer cancel()
	if cmd == c.list.FullCommand() {
		return c.runList(ctx, cl, stdout, stderr), true
	}
	return c.runReplay(ctx, cl, stdout, stderr), true
}

func (c *deadLettersCmd) runList(ctx context.Context, cl *apiClient, stdout, stderr io.Writer) int {
	items, err := cl.deadLetters(ctx, *c.unreplayed, *c.limit)
	if err != nil {
		fmt.Fprintf(stderr, "responder: %v\n", err)
		return exitFailed
	}
	if *c.output == "json" {
		return writeJSONOut(stdout, stderr, map[string]any{"items": items})
	}
	if len(items) == 0 {
		fmt.Fprintln(stdout, "No dead letters.")
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCREATED\tREASON\tDELIVERIES\tSIZE\tREPLAYED\tMSG ID\tERROR")
	for _, d := range items {
		replayed := "-"
		if d.ReplayedAt != nil {
			replayed = d.ReplayedAt.UTC().Format(time.RFC3339) + " by " + d.ReplayedBy
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", d.ID, d.At.UTC().Format(time.RFC3339), d.Reason, d.Deliveries,
			d.Size, replayed, d.MsgID, oneLine(d.Error, 80))
	}
	if err := tw.Flush(); err != nil {
		return exitFailed
	}
	return exitOK
}

type replayItem struct {
	ID          int64            `json:"id"`
	Result      string           `json:"result"`
	ReplayMsgID string           `json:"replay_msg_id"`
	Duplicate   bool             `json:"duplicate"`
	DeadLetter  store.DeadLetter `json:"dead_letter"`
}

func (c *deadLettersCmd) runReplay(ctx context.Context, cl *apiClient, stdout, stderr io.Writer) int {
	ids, err := c.replayIDs(ctx, cl)
	if errors.Is(err, errBadArgs) {
		fmt.Fprintf(stderr, "responder: %v\n", err)
		return exitBadArgs
	}
	if err != nil {
		fmt.Fprintf(stderr, "responder: %v\n", err)
		return exitFailed
	}
	if len(ids) == 0 {
		fmt.Fprintln(stdout, "No dead letters to replay.")
		return exitOK
	}
	var items []replayItem
	for start := 0; start < len(ids); start += 1000 {
		part, err := cl.replay(ctx, ids[start:min(start+1000, len(ids))], *c.by)
		items = append(items, part...)
		if err != nil {
			c.printReplays(stdout, stderr, items)
			fmt.Fprintf(stderr, "responder: %v\n", err)
			return exitFailed
		}
	}
	return c.printReplays(stdout, stderr, items)
}

var errBadArgs = errors.New("bad arguments")

// replayIDs are the ids named, or with --all those of every dead letter not replayed yet. Naming
// nothing is refused: replaying everything must be asked for.
func (c *deadLettersCmd) replayIDs(ctx context.Context, cl *apiClient) ([]int64, error) {
	switch {
	case *c.all && len(*c.ids) > 0:
		return nil, fmt.Errorf("%w: name dead letter ids or pass --all, not both", errBadArgs)
	case *c.all:
		items, err := cl.deadLetters(ctx, true, 0)
		ids := make([]int64, len(items))
		for i, d := range items {
			ids[len(items)-1-i] = d.ID // oldest first
		}
		return ids, err
	case len(*c.ids) == 0:
		return nil, fmt.Errorf("%w: name the dead letter ids to replay (see `responder dead-letters list --unreplayed`), or pass --all", errBadArgs)
	}
	ids := make([]int64, 0, len(*c.ids))
	for _, s := range *c.ids {
		id, err := strconv.ParseInt(s, 10, 64)
		if err != nil || id <= 0 {
			return nil, fmt.Errorf("%w: %q is not a dead letter id (a positive integer)", errBadArgs, s)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// printReplays prints what happened to each dead letter; exit 1 unless every one was replayed now.
func (c *deadLettersCmd) printReplays(stdout, stderr io.Writer, items []replayItem) int {
	code := exitOK
	for _, it := range items {
		if it.Result != "replayed" {
			code = exitFailed
		}
	}
	if *c.output == "json" {
		if writeJSONOut(stdout, stderr, map[string]any{"items": items}) != exitOK {
			return exitFailed
		}
		return code
	}
	for _, it := range items {
		switch it.Result {
		case "replayed":
			fmt.Fprintf(stdout, "dead letter %d replayed as %s\n", it.ID, it.ReplayMsgID)
		default:
			by := ""
			if d := it.DeadLetter; d.ReplayedAt != nil {
				by = fmt.Sprintf(" at %s by %s", d.ReplayedAt.UTC().Format(time.RFC3339), d.ReplayedBy)
			}
			fmt.Fprintf(stdout, "dead letter %d NOT replayed: %s%s (a replay that failed again is a new dead letter)\n", it.ID,
				strings.ReplaceAll(it.Result, "_", " "), by)
		}
	}
	return code
}

func writeJSONOut(stdout, stderr io.Writer, v any) int {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Fprintf(stderr, "responder: %v\n", err)
		return exitFailed
	}
	return exitOK
}

// oneLine shortens s to one line of at most n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// apiClient calls responder's API with a bearer token.
type apiClient struct {
	base  string
	token string
	http  *http.Client
}

func newAPIClient(base, tokenFile string) (*apiClient, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--url %q: want http(s)://host:port", base)
	}
	c := &apiClient{base: strings.TrimRight(base, "/"), http: &http.Client{}}
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--api-token-file: %w", err)
		}
		c.token = strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
	}
	return c, nil
}

// do sends a request and decodes a 2xx JSON answer into out; any other answer is an error
// carrying the API's "error".
func (c *apiClient) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(b))
		}
		_ = json.Unmarshal(b, out) // a partial answer (e.g. replays done before a failure)
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, e.Error)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	return nil
}

// deadLetters pages through GET /api/v1/dead-letters; limit 0 = all.
func (c *apiClient) deadLetters(ctx context.Context, unreplayed bool, limit int) ([]store.DeadLetter, error) {
	var all []store.DeadLetter
	cursor := ""
	for {
		q := url.Values{"limit": {"1000"}}
		if unreplayed {
			q.Set("replayed", "false")
		}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var l struct {
			Items      []store.DeadLetter `json:"items"`
			NextCursor string             `json:"next_cursor"`
		}
		if err := c.do(ctx, http.MethodGet, "/api/v1/dead-letters?"+q.Encode(), nil, &l); err != nil {
			return nil, err
		}
		all = append(all, l.Items...)
		if limit > 0 && len(all) >= limit {
			return all[:limit], nil
		}
		if l.NextCursor == "" {
			return all, nil
		}
		cursor = l.NextCursor
	}
}

// replay posts one replay request.
func (c *apiClient) replay(ctx context.Context, ids []int64, by string) ([]replayItem, error) {
	var out struct {
		Items []replayItem `json:"items"`
	}
	err := c.do(ctx, http.MethodPost, "/api/v1/dead-letters/replay", map[string]any{"ids": ids, "by": by}, &out)
	return out.Items, err
}
