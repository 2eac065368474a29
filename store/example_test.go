package store_test

import (
	"fmt"

	"github.com/social/user-events-router/store"
)

func ExampleRedact() {
	fmt.Println(store.Redact("postgres://router:s3cret@db.internal:5432/social?sslmode=require"))
	fmt.Println(store.Redact("mysql://root:s3cret@127.0.0.1:3306/social?parseTime=true"))
	fmt.Println(store.Redact("sqlite:/var/lib/router/router.db"))
	// Output:
	// postgres://router:xxxxx@db.internal:5432/social?sslmode=require
	// mysql://root:xxxxx@127.0.0.1:3306/social?parseTime=true
	// sqlite:/var/lib/router/router.db
}

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
