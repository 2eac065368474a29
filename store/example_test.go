package store_test

import (
	"fmt"

	"github.com/social/user-events-router/store"
)

func ExampleParseURL() {
	for _, databaseURL := range []string{
		"postgresql://router@db.internal/social",
		"sqlite:data/router.db",
		"sqlite::memory:",
	} {
		dialect, err := store.ParseURL(databaseURL)
		fmt.Println(dialect, err)
	}
	// Output:
	// postgres <nil>
	// sqlite <nil>
	//  invalid database URL "sqlite::memory:": in-memory SQLite loses every command on exit and differs per connection; use a file
}
