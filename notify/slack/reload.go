package slack

import "github.com/responder-sre/responder/config"

// liveConfig is what a configuration reload changes in a running Slack integration (SetConfig).
type liveConfig struct {
	cfg      config.SlackConfig
	users    map[string]bool // cfg.Approvers.Users
	cfgPause bool            // safety.paused
}

// SetConfig applies a reloaded slack section and safety.paused while Slack runs: the approvers
// (users and groups), group_cache_ttl, channel, page_group and the signing secret. The bot and
// app-level tokens, api_url and socket_mode stay as New had them: changing them needs a
// restart (the app refuses such a reload). Safe for concurrent use.
func (s *Slack) SetConfig(cfg config.SlackConfig, configPaused bool) {
	lc := &liveConfig{cfg: cfg, users: make(map[string]bool, len(cfg.Approvers.Users)), cfgPause: configPaused}
	for _, u := range cfg.Approvers.Users {
		lc.users[u] = true
	}
	s.live.Store(lc)
}

// conf returns the reloadable settings in force.
func (s *Slack) conf() *liveConfig { return s.live.Load() }
