package handlers

import "github.com/social/user-events-router/schema"

// HandlerUpdated is the stable name of the updated handler.
const HandlerUpdated = "user_updated"

// Updated turns user.events.updated into sync_identity. The Auth Service
// fires it even when no identity field changed; the command still carries
// the full identity so applying it is idempotent.
var Updated = Handler{Name: HandlerUpdated, Action: schema.ActionUpdated, Build: buildUpdated}

func buildUpdated(ev schema.UserEvent, d Delivery) schema.Command {
	return newCommand(schema.CommandSyncIdentity, ev, d)
}
