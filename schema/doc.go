// Package schema holds the wire shapes the router accepts and emits: the
// identity event the Auth Service publishes (UserEvent, decoded and validated
// by DecodeEvent) and the profile-sync command the router writes for the
// Social Monolith (Command), with JSON Schema documents for both.
//
// The rules follow what the running Auth Service really sends (DESIGN §2),
// not the integration guide: the Auth Service is the source of truth for
// identity, so the decoder carries what it sends — any e-mail (the empty
// one included), any username, unknown fields of any shape — and refuses
// only what cannot be carried, as an *InvalidEventError that matches
// ErrInvalidEvent. Outside text that is not identity (request_id,
// service_name) leaves this package as PrintableText; an unusable V1
// displayName or avatar is dropped and listed in UserEvent.Dropped.
//
// One hand-written scanner reads every body, without recursion and without
// building a tree: Peek (on every message's path) and DecodeEvent share it.
package schema
