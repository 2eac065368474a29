package handlers

import "github.com/social/user-events-router/schema"

// HandlerCreated is the stable name of the created handler.
const HandlerCreated = "user_created"

// Created turns user.events.created into create_profile, with the profile
// defaults the monolith expects for a new user. Events of schema V1 may carry
// displayName and avatar: they are better defaults than the username.
var Created = Handler{Name: HandlerCreated, Action: schema.ActionCreated, Build: buildCreated}

func buildCreated(ev schema.UserEvent, d Delivery) schema.Command {
	cmd := newCommand(schema.CommandCreateProfile, ev, d)
	displayName := ev.DisplayName
	if displayName == "" {
		displayName = ev.Username
	}
	cmd.ProfileDefaults = &schema.ProfileDefaults{DisplayName: displayName, Avatar: ev.Avatar, Bio: ""}
	return cmd
}
