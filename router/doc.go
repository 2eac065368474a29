// Package router assembles the user-events router from its rooms, one per
// responsibility, each a package beneath this one:
//
//	router/broker    NATS: the connection, the Auth Service's stream, the
//	                 durable bound or created (Binding, its memory bound),
//	                 the embedded server
//	router/consume   the JetStream subscriber: per-user order, the byte
//	                 budget, the workers, the unmarshaler, the acks
//	router/ingress   the HTTP fallback (POST /api/sync/users)
//	router/admin     the admin address: probes and /status (Health), the
//	                 poison API, the web console
//	router/httpx     the JSON answer and the bearer-token check that
//	                 ingress and admin share
//
// This package holds what joins them: the Watermill router (New: the
// subscriber of router/consume, one handler behind the middleware chain),
// and the Pipeline that runs a message through the same chain for the
// paths that do not come from NATS, the HTTP fallback and poison replay
// (Replayer). Imports go one way: broker ← consume ← router ← ingress ←
// admin, with httpx beside the last two; cli/ wires them all.
//
// Test helpers: router/routertest (an in-process NATS server) and
// router/pipelinetest (the pipeline over a real database).
package router
