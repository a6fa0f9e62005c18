package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/drill"
)

// drillCmd is `responder drill run`: it runs the drill scenarios of a file against a running
// responder, one after another.
type drillCmd struct {
	run              *kingpin.CmdClause
	url              *string
	apiTokenFile     *string
	webhookTokenFile *string
	output           *string
	poll             *time.Duration
	file             *string
}

func addDrillCmd(a *kingpin.Application) *drillCmd {
	c := &drillCmd{}
	d := a.Command("drill", "Disaster-recovery drills against a running responder.")
	c.run = d.Command("run", "Run the drills of FILE one after another (exit 0 all pass, 1 any fails, 2 bad input).")
	c.url = c.run.Flag("url", "responder's base URL (API and webhook).").Default("http://localhost:9095").String()
	c.apiTokenFile = c.run.Flag("api-token-file", "File holding the admin API token (the drill starts runs and approves).").String()
	c.webhookTokenFile = c.run.Flag("webhook-token-file", "File holding the webhook bearer token (synthetic alerts go through the intake path).").String()
	c.output = c.run.Flag("output", "Report format: text or json (a JSON array of reports).").Short('o').Default("text").Enum("text", "json")
	c.poll = c.run.Flag("poll", "How often the run's incidents are read.").Default(drill.DefaultPoll.String()).Duration()
	c.file = c.run.Arg("file", "Drill file (a top-level drills: list).").Required().String()
	return c
}

// exec runs the command if cmd is `drill run`; ok is false otherwise. SIGINT and SIGTERM end the
// drill in progress (its report is still recorded) and skip the rest.
func (c *drillCmd) exec(ctx context.Context, cmd string, stdout, stderr io.Writer) (code int, ok bool) {
	if cmd != c.run.FullCommand() {
		return 0, false
	}
	drills, err := config.LoadDrills(*c.file)
	if err != nil {
		fmt.Fprintf(stderr, "responder: %v\n", err)
		return exitBadArgs, true
	}
	target, err := drill.NewHTTPTarget(*c.url, *c.apiTokenFile, *c.webhookTokenFile, nil)
	if err != nil {
		fmt.Fprintf(stderr, "responder: %v\n", err)
		return exitBadArgs, true
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	r := &drill.Runner{Target: target, Poll: *c.poll, Log: slog.New(slog.NewTextHandler(stderr, nil))}
	reports := make([]drill.Report, 0, len(drills))
	for _, d := range drills {
		if ctx.Err() != nil {
			break
		}
		reports = append(reports, r.Run(ctx, d))
	}
	if *c.output == "json" {
		if code := writeJSONOut(stdout, stderr, reports); code != exitOK {
			return code, true
		}
	} else if err := writeDrillText(stdout, reports); err != nil {
		fmt.Fprintf(stderr, "responder: %v\n", err)
		return exitFailed, true
	}
	if len(reports) < len(drills) {
		fmt.Fprintf(stderr, "responder: interrupted: %d of %d drills not run\n", len(drills)-len(reports), len(drills))
		return exitFailed, true
	}
	for _, rep := range reports {
		if !rep.Passed {
			return exitFailed, true
		}
	}
	return exitOK, true
}

// writeDrillText prints a table per drill: its outcome and timing, its steps, its failure.
func writeDrillText(w io.Writer, reports []drill.Report) error {
	for i, r := range reports {
		if i > 0 {
			fmt.Fprintln(w)
		}
		result := "PASS"
		if !r.Passed {
			result = "FAIL"
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "DRILL\tRESULT\tRTO\tDETECT\tDECIDE\tAPPROVE\tACT\tRECOVER\tRUN\n")
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, result, dur(r.RTOSeconds), dur(r.DetectSeconds),
			dur(r.DecideSeconds), dur(r.ApproveSeconds), dur(r.ActSeconds), dur(r.RecoverSeconds), dash(r.RunID))
		if err := tw.Flush(); err != nil {
			return err
		}
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "  STEP\tRULE\tHANDLER\tEXPECT\tACTION\tSTATE\tAPPROVE\tACT\n")
		for k, s := range r.Steps {
			state := string(s.State)
			if s.Reason != "" {
				state += " (" + string(s.Reason) + ")"
			}
			action := "-"
			if s.ActionID != 0 {
				action = fmt.Sprint(s.ActionID)
			}
			fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k, s.Rule, s.Handler, s.Expected, action, dash(state),
				dur(s.ApproveSeconds), dur(s.ActSeconds))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if r.Failure != "" {
			fmt.Fprintf(w, "  failure: %s\n", oneLine(r.Failure, 400))
		}
	}
	return nil
}

// dur prints seconds as a duration rounded to the millisecond.
func dur(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond).String()
}

func dash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}
