// Package e2e holds the end-to-end tests: each runs the router's commands
// in-process through cli.Run, as main does, against an in-process
// nats-server (router/routertest) and a real database (store/storetest:
// SQLite, and PostgreSQL and MariaDB when TEST_POSTGRES_URL and
// TEST_MYSQL_URL are set), and checks what the Auth Service, the monolith
// or an operator sees: rows in SQL, HTTP status codes, /status and
// /metrics, log lines, a command's output and exit status.
//
// The package has tests only. A test of one piece of package cli (a
// formatter, a parser) is a unit test and lives in cli/ as a package cli
// test. The deploy files' checks (deploy_test.go, alerts_test.go) live
// here too: they parse ../deploy and start the router with this harness.
//
// To add a test, put it in the file of what it exercises (ingress_test.go,
// poison_test.go, check_test.go, …) or a new WHAT_test.go, and build on the
// harness in helpers_test.go: startRouter(t, testEnv(t, natsURL, dbURL))
// runs serve until the test ends (stop ends it sooner and checks that it
// shut down cleanly), runCommand runs any other command as a shell would,
// openDB, countCommands and commandRows read the database, and
// waitForConsumer and routertest.Eventually wait for a condition: never
// sleep. Each test calls t.Parallel (unless it sets the process's
// environment with t.Setenv) and makes its own NATS server
// (routertest.StartServer), database (storetest.URL) and ports (port 0 or
// freeAddr), so tests share nothing; storetest.EachBackend runs one on
// every database configured. Feature helpers sit with their tests:
// ingressEnv and waitForIngress (ingress_test.go), getStatus
// (readiness_test.go), newWorld, a router reached both ways
// (sameevent_test.go).
//
// Run them with `go test -race ./e2e`; they take minutes, most of it on
// PostgreSQL and MariaDB, whose suites run when TEST_POSTGRES_URL and
// TEST_MYSQL_URL are set (README.md, "Two commands").
package e2e
