package probe

import (
	"cmp"
	"context"
	"log/slog"
	"sync"
	"time"
)

// DefaultDrillRound is how long one read of the running drills serves the probes (Drills.Round):
// the probes whose episodes start in the same tick of their intervals share it.
const DefaultDrillRound = time.Second

// drillReadTimeout bounds one read of the running drills: a slow store delays a probe's run by
// at most this much (the episode is then not a drill's).
const drillReadTimeout = 2 * time.Second

// drillWarnEvery rate-limits the warning that the running drills could not be read.
const drillWarnEvery = time.Minute

// Drills tells the probes which of them running drills list, so that a failing episode that
// starts during a drill carries the drill's run id (label alert.DrillLabel). It reads Read at
// most once per Round however many probes start an episode in it, and only when one does: a
// healthy probe never reads it. A failed read is logged (a warning at most once a minute, else
// at debug level) and counts as "no drills" for the round. One Drills is shared by every Runner
// of a process (Options.Drills); its methods are safe for concurrent use.
type Drills struct {
	// Read returns the probes that running drills list, by probe name, with the drill's run id
	// (store.ActiveDrillProbes). Nil: no drills.
	Read func(ctx context.Context) (map[string]string, error)
	// Round is how long one read serves (default DefaultDrillRound).
	Round time.Duration
	// Now is the clock of the rounds (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger

	mu     sync.Mutex // held during a read: the probes of a round wait for the one read
	at     time.Time  // when the cached read was made (zero: none)
	cached map[string]string
	warned time.Time
}

// RunID returns the run id of the drill that lists probe now, or "" when none does (or the
// drills could not be read).
func (d *Drills) RunID(ctx context.Context, probe string) string {
	if d == nil || d.Read == nil {
		return ""
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	if d.at.IsZero() || now.Before(d.at) || now.Sub(d.at) >= cmp.Or(d.Round, DefaultDrillRound) {
		d.cached, d.at = d.read(ctx, now), now
	}
	return d.cached[probe]
}

// read reads the running drills once; d.mu is held. A failure is "no drills".
func (d *Drills) read(ctx context.Context, now time.Time) map[string]string {
	ctx, cancel := context.WithTimeout(ctx, drillReadTimeout)
	defer cancel()
	m, err := d.Read(ctx)
	if err == nil {
		return m
	}
	log := d.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	level := slog.LevelDebug
	if d.warned.IsZero() || now.Sub(d.warned) >= drillWarnEvery {
		level, d.warned = slog.LevelWarn, now
	}
	log.Log(ctx, level, "could not read the running drills; probe episodes starting now are not marked as drills", "err", err)
	return nil
}

func (d *Drills) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}
