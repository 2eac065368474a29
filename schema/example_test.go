package schema_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/social/user-events-router/schema"
)

func ExampleDecodeEvent() {
	// Byte for byte what the Auth Service publishes on user.events.created.
	body := []byte(`{"id":"78af4bc4-afce-4676-b373-5b802a2dfd2e","email":"alice@example.com","username":"alice01","action":"created","request_id":"","timestamp":"2026-11-28T13:28:17Z","service_name":"gofiber-auth"}`)

	ev, err := schema.DecodeEvent("user.events.created", body)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(ev.ID)
	fmt.Println(ev.Action, ev.Username, ev.Email)
	fmt.Println(ev.Timestamp.Format(time.RFC3339), ev.ServiceName)
	fmt.Printf("request_id %q\n", ev.RequestID)
	// Output:
	// 78af4bc4-afce-4676-b373-5b802a2dfd2e
	// created alice01 alice@example.com
	// 2026-11-28T13:28:17Z gofiber-auth
	// request_id ""
}

func ExampleDecodeEvent_invalid() {
	body := []byte(`{"id":"abc","username":"alice01","action":"created","timestamp":"2026-11-28T13:28:17Z"}`)

	_, err := schema.DecodeEvent("user.events.created", body)
	fmt.Println(err)
	fmt.Println("permanent:", errors.Is(err, schema.ErrInvalidEvent))

	var invalid *schema.InvalidEventError
	if errors.As(err, &invalid) {
		for _, p := range invalid.Problems {
			fmt.Printf("%s -> %s\n", p.Field, p.Message)
		}
	}
	// Output:
	// invalid event: id: not a UUID: "abc"; email: missing
	// permanent: true
	// id -> not a UUID: "abc"
	// email -> missing
}

func ExampleCommand() {
	cmd := schema.Command{
		CommandID:     "0f8d6a3e-2b1c-5d4e-9f6a-7b8c9d0e1f2a",
		Type:          schema.CommandCreateProfile,
		SchemaVersion: schema.CommandSchemaVersion,
		UserID:        "78af4bc4-afce-4676-b373-5b802a2dfd2e",
		Email:         "alice@example.com",
		Username:      "alice01",
		OccurredAt:    time.Date(2026, 11, 28, 13, 28, 17, 0, time.UTC),
		Generation:    1,
		UserSequence:  1,
		CorrelationID: "5b1e0c8e-8f0a-4b9e-a0d4-2f4f3c2a1b00",
		Source: schema.Source{
			Service:         "gofiber-auth",
			Subject:         "user.events.created",
			Ingress:         schema.IngressNATS,
			StreamSequence:  17,
			DeliveryAttempt: 1,
		},
		// Only create_profile carries defaults; they land at the top level.
		ProfileDefaults: &schema.ProfileDefaults{DisplayName: "alice01"},
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(cmd); err != nil {
		fmt.Println(err)
	}
	// Output:
	// {
	//   "command_id": "0f8d6a3e-2b1c-5d4e-9f6a-7b8c9d0e1f2a",
	//   "type": "create_profile",
	//   "schema_version": 1,
	//   "user_id": "78af4bc4-afce-4676-b373-5b802a2dfd2e",
	//   "email": "alice@example.com",
	//   "username": "alice01",
	//   "occurred_at": "2026-11-28T13:28:17Z",
	//   "generation": 1,
	//   "user_sequence": 1,
	//   "correlation_id": "5b1e0c8e-8f0a-4b9e-a0d4-2f4f3c2a1b00",
	//   "source": {
	//     "service": "gofiber-auth",
	//     "subject": "user.events.created",
	//     "ingress": "nats",
	//     "stream_sequence": 17,
	//     "delivery_attempt": 1,
	//     "request_id": ""
	//   },
	//   "display_name": "alice01",
	//   "avatar": "",
	//   "bio": ""
	// }
}

// The producer's wire shape marshals byte for byte like the Auth Service.
func ExampleProducerEvent() {
	b, _ := json.Marshal(schema.ProducerEvent{
		ID: "78af4bc4-afce-4676-b373-5b802a2dfd2e", Email: "alice@example.com", Username: "alice01",
		Action: schema.ActionCreated, Timestamp: "2026-11-28T13:28:17Z", ServiceName: schema.ProducerServiceName,
	})
	fmt.Println(string(b))
	// Output:
	// {"id":"78af4bc4-afce-4676-b373-5b802a2dfd2e","email":"alice@example.com","username":"alice01","action":"created","request_id":"","timestamp":"2026-11-28T13:28:17Z","service_name":"gofiber-auth"}
}
