// Package schema holds the wire shapes the router accepts and emits: the
// identity event the Auth Service publishes (UserEvent, decoded and validated
// by DecodeEvent) and the profile-sync command the router writes for the
// Social Monolith (Command), with JSON Schema documents for both.
//
// The rules follow what the running Auth Service really sends (DESIGN §2),
// not the integration guide: request_id may be empty, sequence is usually
// absent, and V1 leftovers (displayName, avatar, role, isActive) are
// tolerated. Anything that no retry can fix is reported as an
// *InvalidEventError that matches ErrInvalidEvent.
package schema
