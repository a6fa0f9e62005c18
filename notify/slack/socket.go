package slack

import (
	"context"
	"errors"
	"fmt"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"
)

// RunSocketMode receives slash commands and button clicks over Slack's Socket Mode websocket (for
// clusters that cannot expose /slack/*) until ctx ends, feeding them to the same code as the HTTP
// endpoints. Requests arrive authenticated by the app-level token's connection, so there is no
// signature to check. Run it on one replica (the leader) or on all: decisions are idempotent.
func (s *Slack) RunSocketMode(ctx context.Context) error {
	if s.cfg.AppToken == "" {
		return errors.New("slack: socket mode needs an app-level token (slack.app_token_file)")
	}
	client := socketmode.New(s.api)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- client.RunContext(ctx) }()
	for {
		select {
		case <-ctx.Done():
			s.Wait()
			return nil
		case err := <-errc:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("slack socket mode: %w", err)
		case evt := <-client.Events:
			s.socketEvent(ctx, client, evt)
		}
	}
}

func (s *Slack) socketEvent(ctx context.Context, client *socketmode.Client, evt socketmode.Event) {
	switch evt.Type {
	case socketmode.EventTypeConnected:
		s.log.Info("slack: socket mode connected")
	case socketmode.EventTypeConnectionError, socketmode.EventTypeInvalidAuth:
		s.log.Warn("slack: socket mode connection problem", "event", string(evt.Type))
	case socketmode.EventTypeSlashCommand:
		cmd, ok := evt.Data.(slack.SlashCommand)
		if !ok || evt.Request == nil {
			return
		}
		text := s.runCommand(ctx, cmd.UserID, cmd.Text)
		s.ack(ctx, client, evt.Request, ephemeral(text))
		s.m.requests.WithLabelValues(endpointSocket, "200").Inc()
	case socketmode.EventTypeInteractive:
		cb, ok := evt.Data.(slack.InteractionCallback)
		if !ok || evt.Request == nil {
			return
		}
		s.ack(ctx, client, evt.Request, nil)
		s.m.requests.WithLabelValues(endpointSocket, "200").Inc()
		in, err := interactionOf(cb)
		if err != nil {
			return
		}
		s.interact(ctx, in)
	}
}

func (s *Slack) ack(ctx context.Context, client *socketmode.Client, req *socketmode.Request, payload any) {
	if err := client.AckCtx(ctx, req.EnvelopeID, payload); err != nil {
		s.log.Warn("slack: could not acknowledge a socket mode request", "err", err)
	}
}
