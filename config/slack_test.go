package config

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// slackFiles serves the slack secrets by base name.
func slackFiles(files map[string]string) Option {
	return withReadFile(func(p string) ([]byte, error) {
		if v, ok := files[filepath.Base(p)]; ok {
			return []byte(v + "\n"), nil
		}
		return nil, fmt.Errorf("open %s: %w", p, fs.ErrNotExist)
	})
}

func TestLoadSlack(t *testing.T) {
	cfg := mustLoad(t, "conf.slack.yml", slackFiles(map[string]string{"bot-token": "xoxb-1-SECRET", "signing-secret": "SECRET-signing"}))
	s := cfg.Slack
	if !s.Configured() {
		t.Fatal("Configured() = false")
	}
	checks := []struct {
		key       string
		got, want any
	}{
		{"bot token", s.BotToken.Value(), "xoxb-1-SECRET"},
		{"signing secret", s.SigningSecret.Value(), "SECRET-signing"},
		{"app token", s.AppToken.Value(), ""},
		{"channel", s.Channel, "#incidents"},
		{"api_url", s.APIURL, "http://127.0.0.1:9999/api/"},
		{"page_group", s.PageGroup, "S0614TZR7"},
		{"group_cache_ttl", s.GroupCacheTTL.D(), 2 * time.Minute},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.key, c.got, c.want)
		}
	}
	if want := (SlackApprovers{Users: []string{"U012AB3CD"}, Groups: []string{"S0614TZR7"}}); !cmp.Equal(s.Approvers, want) {
		t.Errorf("approvers = %+v, want %+v", s.Approvers, want)
	}
	if got := fmt.Sprintf("%v %+v", s, s); strings.Contains(got, "SECRET") {
		t.Errorf("the slack section prints its secrets: %s", got)
	}
}

func TestLoadSlackSocketMode(t *testing.T) {
	cfg := mustLoad(t, "conf.slack-socket.yml", slackFiles(map[string]string{"bot-token": "xoxb-1", "app-token": "xapp-1"}))
	if !cfg.Slack.SocketMode || cfg.Slack.AppToken.Value() != "xapp-1" || cfg.Slack.SigningSecret != "" {
		t.Errorf("socket mode config = %+v", cfg.Slack)
	}
}

func TestLoadSlackInert(t *testing.T) {
	cfg := mustLoad(t, "conf.slack-inert.yml")
	if cfg.Slack.Configured() {
		t.Error("a slack section with only a channel is configured")
	}
}

func TestLoadSlackErrors(t *testing.T) {
	for _, tc := range []struct {
		file  string
		files map[string]string
		want  []string
	}{
		{"conf.slack-bad.yml", nil, []string{
			`conf.slack-bad.yml:3: slack.approvers.users[1]: "bob" is not a Slack user ID`,
			`conf.slack-bad.yml:4: slack.approvers.groups[0]: "G123" is not a Slack user group ID`,
			`conf.slack-bad.yml:5: slack.channel: "incidents" is neither #name`,
			`conf.slack-bad.yml:6: slack.socket_mode: needs slack.app_token_file`,
			`conf.slack-bad.yml:7: slack.api_url: "ftp://x" is not an absolute http(s) URL`,
			`conf.slack-bad.yml:8: slack.page_group: "nope" is not a Slack user group ID`,
			`conf.slack-bad.yml:2: slack.bot_token_file: required when slack is configured`,
		}},
		{"conf.slack-bad-missing.yml", map[string]string{"signing-secret": "x"}, []string{
			`conf.slack-bad-missing.yml:2: slack.bot_token_file: required when slack is configured`,
			`conf.slack-bad-missing.yml:2: slack.channel: required when slack is configured`,
		}},
		{"conf.slack-bad-token.yml", map[string]string{"bot-token": "xoxp-user-token", "signing-secret": "x", "app-token": "xoxb-wrong"}, []string{
			`conf.slack-bad-token.yml:2: slack.bot_token_file: does not hold a bot token (it should start with xoxb-)`,
			`conf.slack-bad-token.yml:5: slack.app_token_file: does not hold an app-level token (it should start with xapp-)`,
		}},
		{"conf.slack-bad-token.yml", map[string]string{"signing-secret": "x", "app-token": "xapp-1"}, []string{
			`conf.slack-bad-token.yml:2: slack.bot_token_file: open`,
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			_, err := load(t, tc.file, slackFiles(tc.files))
			if err == nil {
				t.Fatal("Load succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if strings.Contains(err.Error(), "xoxp-user-token") || strings.Contains(err.Error(), "xoxb-wrong") {
				t.Errorf("error echoes a token: %v", err)
			}
			var pe *posError
			if !errors.As(err, &pe) {
				t.Errorf("error %T is not positioned", err)
			}
		})
	}
}
