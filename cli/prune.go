package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/social/user-events-router/configs"
	"github.com/social/user-events-router/store"
)

// pruneInterval is how often serve prunes the commands table.
const pruneInterval = time.Hour

func pruneCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newCommandFlags("prune", "usage: user-events-router prune [--dry-run]\n\n"+
		"Deletes commands older than COMMANDS_RETENTION that every consumer group has read\n"+
		"(each group with an offset, and every group in COMMANDS_CONSUMER_GROUPS).\n")
	dryRun := fs.Bool("dry-run", false, "count the commands that would be pruned; delete nothing")
	if err := fs.parseNoArgs(args, stdout); err != nil {
		return err
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	if cfg.CommandsRetention == 0 {
		fmt.Fprintln(stdout, "retention is off (COMMANDS_RETENTION=0): nothing to prune")
		return nil
	}
	open := openStore
	if *dryRun {
		open = openReadOnlyStore // a dry run changes nothing
	}
	db, err := open(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	rep, err := db.PruneCommands(ctx, pruneOptions(cfg, *dryRun))
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, describePrune(rep, cfg, *dryRun))
	return nil
}

func pruneOptions(cfg configs.Config, dryRun bool) store.PruneOptions {
	return store.PruneOptions{OlderThan: cfg.CommandsRetention, Required: cfg.ConsumerGroupsToWait(), DryRun: dryRun}
}

func describePrune(rep store.PruneReport, cfg configs.Config, dryRun bool) string {
	verb := "pruned"
	if dryRun {
		verb = "would prune"
	}
	switch {
	case len(rep.Waiting) > 0:
		return fmt.Sprintf("%s 0 commands: waiting for consumer group(s) %s to read the commands (COMMANDS_CONSUMER_GROUPS)",
			verb, strings.Join(rep.Waiting, ", "))
	case len(rep.Groups) == 0:
		return verb + " 0 commands: no consumer group has read the commands table yet"
	}
	return fmt.Sprintf("%s %d commands older than %s read by every consumer group (%s)",
		verb, rep.Pruned, cfg.CommandsRetention, strings.Join(rep.Groups, ", "))
}

// runPruner prunes at start and every pruneInterval until ctx ends.
func runPruner(ctx context.Context, cfg configs.Config, db *store.DB, logger *slog.Logger) {
	if cfg.CommandsRetention == 0 {
		return
	}
	t := time.NewTicker(pruneInterval)
	defer t.Stop()
	last := ""
	for {
		rep, err := db.PruneCommands(ctx, pruneOptions(cfg, false))
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			logger.Warn("pruning commands failed; will try again", "error", err, "next_in", pruneInterval)
		default:
			// Say it when something was pruned or the reason changed, not
			// every hour the same.
			if msg := describePrune(rep, cfg, false); rep.Pruned > 0 || msg != last {
				logger.Info(msg, "pruned", rep.Pruned)
				last = msg
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
