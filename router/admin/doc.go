// Package admin serves the operator's endpoints on the admin address: the
// probes and the state report (Health: /healthz, /readyz, /status, and the
// state metrics), the poison API under /admin/poison (its JSON shapes and
// the filter parsing `poison` shares with it, poisonapi.go), and the web
// console under /admin/ui/ (console*.go, its templates in console/). It
// replays through router.Replayer, and reports on the router, the broker
// and the HTTP fallback without owning any of them.
package admin
