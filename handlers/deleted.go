package handlers

import "github.com/social/user-events-router/schema"

// HandlerDeleted is the stable name of the deleted handler.
const HandlerDeleted = "user_deleted"

// Deleted turns user.events.deleted (a hard delete on the auth side) into
// delete_profile; what deleting a profile means is the monolith's decision.
var Deleted = Handler{Name: HandlerDeleted, Action: schema.ActionDeleted, Build: buildDeleted}

func buildDeleted(ev schema.UserEvent, d Delivery) schema.Command {
	return newCommand(schema.CommandDeleteProfile, ev, d)
}
