package slack

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/slack-go/slack"

	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

// syncBatch bounds the incidents one pass looks at.
const syncBatch = 200

// Run keeps the incident messages in step with the store until ctx ends: every PollInterval, and
// promptly after Kick, it posts the message of each new incident, updates in place (chat.update)
// those whose rendering changed, and posts the resolution notice in the thread. Run it on the
// leader only. Slack being down or rate limiting only delays messages: what was not sent is sent
// by a later pass, from the store.
func (s *Slack) Run(ctx context.Context) error {
	t := time.NewTicker(s.poll)
	defer t.Stop()
	for {
		if _, err := s.SyncOnce(ctx); err != nil && ctx.Err() == nil {
			var rl *errRateLimited
			if !errors.As(err, &rl) {
				s.log.Warn("slack: sync pass failed; will retry", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			s.Wait()
			return nil
		case <-t.C:
		case <-s.wake:
		}
	}
}

// SyncOnce runs one pass and returns how many messages it posted or updated. It stops at the first
// rate limit (the next pass after Retry-After resumes); other failures are logged per incident
// and the first is returned.
func (s *Slack) SyncOnce(ctx context.Context) (int, error) {
	since := s.now().Add(-s.lookback)
	s.mu.Lock()
	floor := s.floor
	s.mu.Unlock()
	floor, err := s.st.SlackFloor(ctx, floor, since)
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	s.floor = floor
	s.mu.Unlock()
	cands, err := s.st.SlackCandidates(ctx, floor, since, syncBatch)
	if err != nil {
		return 0, err
	}
	n := 0
	var firstErr error
	for _, c := range cands {
		changed, err := s.syncIncident(ctx, c)
		if changed {
			n++
		}
		if err == nil {
			continue
		}
		var rl *errRateLimited
		if errors.As(err, &rl) || ctx.Err() != nil {
			return n, err
		}
		s.log.Warn("slack: could not sync an incident message", "incident_id", c.ID, "err", err)
		if firstErr == nil {
			firstErr = err
		}
	}
	return n, firstErr
}

// channelOf is where the first message of incident c goes: the drills channel (drills.page) for
// a drill's incident when one is set, else the rule's slack_channel, else slack.channel. Its
// updates and thread follow the message (store.SlackMessage.Channel).
func (s *Slack) channelOf(c store.SlackIncident) string {
	lc := s.conf()
	if lc.drillChan != "" && drillOf(c) != "" {
		return lc.drillChan
	}
	if s.ruleChan != nil {
		if ch := s.ruleChan(c.Rule); ch != "" {
			return ch
		}
	}
	return lc.cfg.Channel
}

// syncIncident posts or updates one incident's message; it reports whether it sent anything.
func (s *Slack) syncIncident(ctx context.Context, c store.SlackIncident) (bool, error) {
	acts, _, err := s.st.ListActions(ctx, store.ActionFilter{IncidentID: c.ID, Page: store.Page{Limit: store.MaxLimit}})
	if err != nil {
		return false, err
	}
	r := renderIncident(c, acts)
	h := r.hash()
	resolved := c.State == vocab.IncidentResolved && c.ResolvedAt != nil
	allDone := true
	for _, a := range acts {
		allDone = allDone && finished(a.State)
	}
	m := c.Message
	sent, dirty := false, false
	if m == nil {
		var channel, ts string
		err := s.call(ctx, "chat.postMessage", func(ctx context.Context) error {
			var err error
			channel, ts, err = s.api.PostMessageContext(ctx, s.channelOf(c),
				slack.MsgOptionText(r.Text, false), slack.MsgOptionBlocks(r.Blocks...), slack.MsgOptionDisableLinkUnfurl())
			return err
		})
		if err != nil {
			return false, fmt.Errorf("post the message of incident %d: %w", c.ID, err)
		}
		m = &store.SlackMessage{IncidentID: c.ID, Channel: channel, TS: ts, Hash: h}
		sent = true
		s.m.synced.Inc()
		// Saved at once: a crash before the save would post the message twice, after it never.
		if err := s.st.SaveSlackMessage(ctx, *m, s.now()); err != nil {
			return true, err
		}
	} else if m.Hash != h {
		err := s.call(ctx, "chat.update", func(ctx context.Context) error {
			_, _, _, err := s.api.UpdateMessageContext(ctx, m.Channel, m.TS,
				slack.MsgOptionText(r.Text, false), slack.MsgOptionBlocks(r.Blocks...))
			return err
		})
		if err != nil {
			return false, fmt.Errorf("update the message of incident %d: %w", c.ID, err)
		}
		m.Hash = h
		sent, dirty = true, true
		s.m.synced.Inc()
	}
	if resolved && !m.ResolvedNotice {
		err := s.call(ctx, "chat.postMessage", func(ctx context.Context) error {
			_, _, err := s.api.PostMessageContext(ctx, m.Channel, slack.MsgOptionTS(m.TS),
				slack.MsgOptionText(drillPrefix(drillOf(c))+resolutionText(c.Incident)+fmt.Sprintf(" (incident #%d)", c.ID), false))
			return err
		})
		if err != nil {
			if dirty {
				if serr := s.st.SaveSlackMessage(ctx, *m, s.now()); serr != nil {
					s.log.Warn("slack: could not record an updated message", "incident_id", c.ID, "err", serr)
				}
			}
			return sent, fmt.Errorf("post the resolution notice of incident %d: %w", c.ID, err)
		}
		m.ResolvedNotice = true
		sent, dirty = true, true
	}
	if final := resolved && allDone && m.ResolvedNotice; final != m.Final {
		m.Final, dirty = final, true
	}
	if !dirty {
		return sent, nil
	}
	return sent, s.st.SaveSlackMessage(ctx, *m, s.now())
}
