package config

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// SlackConfig configures the Slack integration: incident messages, page.slack, approvals by
// button and slash command, Socket Mode. The section is "configured" when any of bot_token_file,
// signing_secret_file, app_token_file, socket_mode or approvers is set; a configured section
// needs bot_token_file and channel, and signing_secret_file (HTTP endpoints) or socket_mode with
// app_token_file. A section holding only a channel is inert.
type SlackConfig struct {
	BotTokenFile      string `yaml:"bot_token_file"`
	SigningSecretFile string `yaml:"signing_secret_file"`
	AppTokenFile      string `yaml:"app_token_file"`
	// SocketMode receives commands and button clicks over Slack's Socket Mode websocket (needs
	// app_token_file) instead of POST /slack/commands and /slack/interactions.
	SocketMode bool `yaml:"socket_mode"`
	// Channel is where incident messages and pages go: "#name" or a channel ID.
	Channel string `yaml:"channel"`
	// APIURL replaces https://slack.com/api/ (a proxy, or slacktest in tests).
	APIURL    string         `yaml:"api_url"`
	Approvers SlackApprovers `yaml:"approvers"`
	// PageGroup is the user group (S...) page.slack mentions when a rule names none.
	PageGroup string `yaml:"page_group"`
	// GroupCacheTTL is how long members of approvers.groups are cached (default 5m).
	GroupCacheTTL Duration `yaml:"group_cache_ttl"`

	// Secrets read from the *_file keys; never in YAML, never printed.
	BotToken      Secret `yaml:"-"`
	SigningSecret Secret `yaml:"-"`
	AppToken      Secret `yaml:"-"`
}

// SlackApprovers are who may approve, deny, pause and resume from Slack: user IDs (U..., W...)
// and members of user groups (S...).
type SlackApprovers struct {
	Users  []string `yaml:"users"`
	Groups []string `yaml:"groups"`
}

// Configured reports whether the slack section asks for the integration (see SlackConfig).
func (s SlackConfig) Configured() bool {
	return s.BotTokenFile != "" || s.SigningSecretFile != "" || s.AppTokenFile != "" || s.SocketMode ||
		s.BotToken != "" || len(s.Approvers.Users) > 0 || len(s.Approvers.Groups) > 0
}

// The Slack id patterns, the only copy: slack.*, page.slack's params and a rule's slack_channel
// are checked with IsSlackUser, IsSlackUserGroup and IsSlackChannel.
var (
	reSlackUser  = regexp.MustCompile(`^[UW][A-Z0-9]{2,20}$`)
	reSlackGroup = regexp.MustCompile(`^S[A-Z0-9]{2,20}$`)
	// A channel is "#name" or a conversation ID: C (public channel), G (private channel) or D (a
	// direct message, which chat.postMessage accepts too).
	reSlackChannel = regexp.MustCompile(`^(#[a-z0-9][a-z0-9._-]{0,79}|[CGD][A-Z0-9]{2,20})$`)
)

// IsSlackUser reports whether s is a Slack user ID (U... or W...).
func IsSlackUser(s string) bool { return reSlackUser.MatchString(s) }

// IsSlackUserGroup reports whether s is a Slack user group ID (S...).
func IsSlackUserGroup(s string) bool { return reSlackGroup.MatchString(s) }

// IsSlackChannel reports whether s is a channel responder can post to: "#name" (lower case) or a
// conversation ID (C..., G..., or D... for a direct message).
func IsSlackChannel(s string) bool { return reSlackChannel.MatchString(s) }

// validateSlack checks the slack section: the ids wherever they are set, and, when the section is
// configured (Configured), what the integration needs.
func (c *Config) validateSlack(ch *checker) {
	s := c.Slack
	if s.GroupCacheTTL < 0 {
		ch.errorf("slack.group_cache_ttl", "must not be negative")
	}
	if s.APIURL != "" {
		u, err := url.Parse(s.APIURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			ch.errorf("slack.api_url", "%q is not an absolute http(s) URL", s.APIURL)
		}
	}
	validateSlackIDs(ch, s)
	if s.Configured() {
		validateSlackConfigured(ch, s)
	}
}

// validateSlackIDs checks the approvers' user and group IDs and page_group.
func validateSlackIDs(ch *checker, s SlackConfig) {
	for i, u := range s.Approvers.Users {
		if !IsSlackUser(u) {
			ch.errorf(sliceKey("slack.approvers.users", i), "%q is not a Slack user ID (like U012AB3CD)", u)
		}
	}
	for i, g := range s.Approvers.Groups {
		if !IsSlackUserGroup(g) {
			ch.errorf(sliceKey("slack.approvers.groups", i), "%q is not a Slack user group ID (like S0614TZR7)", g)
		}
	}
	if s.PageGroup != "" && !IsSlackUserGroup(s.PageGroup) {
		ch.errorf("slack.page_group", "%q is not a Slack user group ID (like S0614TZR7)", s.PageGroup)
	}
}

// validateSlackConfigured checks what a configured slack section needs: a bot token, a channel,
// a signing secret or Socket Mode with an app token, and tokens of the right kind.
func validateSlackConfigured(ch *checker, s SlackConfig) {
	if s.BotTokenFile == "" && s.BotToken == "" {
		ch.errorf("slack.bot_token_file", "required when slack is configured")
	}
	switch channel := strings.TrimSpace(s.Channel); {
	case channel == "":
		ch.errorf("slack.channel", "required when slack is configured (\"#incidents\" or a channel ID)")
	case !IsSlackChannel(channel):
		ch.errorf("slack.channel", "%q is neither #name (lower case) nor a channel ID (like C0123ABCD)", s.Channel)
	}
	if s.SocketMode {
		if s.AppTokenFile == "" && s.AppToken == "" {
			ch.errorf("slack.socket_mode", "needs slack.app_token_file (an app-level token, xapp-...)")
		}
	} else if s.SigningSecretFile == "" && s.SigningSecret == "" {
		ch.errorf("slack.signing_secret_file", "required unless slack.socket_mode is true (it verifies POST /slack/commands and /slack/interactions)")
	}
	if s.BotToken != "" && !strings.HasPrefix(s.BotToken.Value(), "xoxb-") {
		ch.errorf("slack.bot_token_file", "does not hold a bot token (it should start with xoxb-)")
	}
	if s.AppToken != "" && !strings.HasPrefix(s.AppToken.Value(), "xapp-") {
		ch.errorf("slack.app_token_file", "does not hold an app-level token (it should start with xapp-)")
	}
}

func sliceKey(key string, i int) string { return fmt.Sprintf("%s[%d]", key, i) }

// resolveSlackSecrets reads the slack *_file secrets.
func resolveSlackSecrets(cfg *Config, c *checker, o options) {
	readOne(cfg, c, o, "slack.bot_token", &cfg.Slack.BotToken, cfg.Slack.BotTokenFile)
	readOne(cfg, c, o, "slack.signing_secret", &cfg.Slack.SigningSecret, cfg.Slack.SigningSecretFile)
	readOne(cfg, c, o, "slack.app_token", &cfg.Slack.AppToken, cfg.Slack.AppTokenFile)
}
