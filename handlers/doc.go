// Package handlers turns one validated user event into the profile-sync
// command the Social Monolith applies. Each action has its own file with a
// pure build function; dispatch.go routes a Watermill message to the right
// one and commits the command. Adding an event type means one schema change,
// one file here and one line in Registry.
package handlers
