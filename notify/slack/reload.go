package slack

import "github.com/responder-sre/responder/config"

// liveConfig is what a configuration reload changes in a running Slack integration (SetConfig).
type liveConfig struct {
	cfg      config.SlackConfig
	users    map[string]bool // cfg.Approvers.Users
	cfgPause bool            // safety.paused
	// drillChan is where the incident messages of drills go (drills.page); "" where others go.
	drillChan string
}

// SetConfig applies a reloaded slack section and safety.paused while Slack runs: the approvers
// (users and groups), group_cache_ttl, channel, page_group and the signing secret. The bot and
// app-level tokens, api_url and socket_mode stay as New had them: changing them needs a
// restart (the app refuses such a reload). Safe for concurrent use.
func (s *Slack) SetConfig(cfg config.SlackConfig, configPaused bool) {
	s.setMu.Lock()
	defer s.setMu.Unlock()
	lc := &liveConfig{cfg: cfg, users: make(map[string]bool, len(cfg.Approvers.Users)), cfgPause: configPaused}
	for _, u := range cfg.Approvers.Users {
		lc.users[u] = true
	}
	if old := s.conf(); old != nil {
		lc.drillChan = old.drillChan
	}
	s.live.Store(lc)
}

// SetDrillChannel applies a reloaded drills.page (Options.DrillChannel) while Slack runs: the
// first message of a drill incident goes there from now on; a message already posted stays
// where it is, with its updates and its thread. Safe for concurrent use.
func (s *Slack) SetDrillChannel(channel string) {
	s.setMu.Lock()
	defer s.setMu.Unlock()
	lc := *s.conf()
	lc.drillChan = channel
	s.live.Store(&lc)
}

// conf returns the reloadable settings in force.
func (s *Slack) conf() *liveConfig { return s.live.Load() }
