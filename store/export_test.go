package store

import "context"

// MaxOffset is maxOffset, for the package's external tests.
func (db *DB) MaxOffset(ctx context.Context) (int64, error) { return db.maxOffset(ctx) }

// CopyFallbacks is how many transactions g committed again with the insert
// after their COPY met a stored message.
func (g *GroupCommitter) CopyFallbacks() int64 { return g.copyFallbacks.Load() }
