package store

import "context"

// MaxOffset is maxOffset, for the package's external tests.
func (db *DB) MaxOffset(ctx context.Context) (int64, error) { return db.maxOffset(ctx) }
