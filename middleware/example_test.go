package middleware_test

import (
	"fmt"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/social/user-events-router/handlers"
	"github.com/social/user-events-router/middleware"
)

// Wrap applies the chain outermost first, the order Chain documents.
func ExampleWrap() {
	trace := func(name string) message.HandlerMiddleware {
		return func(h message.HandlerFunc) message.HandlerFunc {
			return func(msg *message.Message) ([]*message.Message, error) {
				fmt.Println("enter", name)
				defer fmt.Println("leave", name)
				return h(msg)
			}
		}
	}
	h := middleware.Wrap(func(*message.Message) ([]*message.Message, error) {
		fmt.Println("handle")
		return nil, nil
	}, []message.HandlerMiddleware{trace("correlation"), trace("poison"), trace("retry")})
	_, _ = h(message.NewMessage("1", []byte(`{}`)))
	// Output:
	// enter correlation
	// enter poison
	// enter retry
	// handle
	// leave retry
	// leave poison
	// leave correlation
}

// Correlation picks the event's request_id, else the transport's id (an HTTP
// X-Request-ID), else one minted from the bytes: the same on every delivery.
func ExampleCorrelation() {
	h := middleware.Correlation(slog.New(slog.DiscardHandler))(func(msg *message.Message) ([]*message.Message, error) {
		fmt.Println(msg.Metadata.Get(handlers.MetaCorrelationID))
		return nil, nil
	})

	withRequestID := message.NewMessage("1", []byte(`{"request_id":"req-42"}`))
	fromHeader := message.NewMessage("2", []byte(`{"request_id":""}`))
	fromHeader.Metadata.Set(handlers.MetaCorrelationID, "x-request-id-7")
	minted := message.NewMessage("3", []byte(`{"request_id":""}`))
	redelivered := message.NewMessage("4", []byte(`{"request_id":""}`))
	for _, msg := range []*message.Message{withRequestID, fromHeader, minted, redelivered} {
		_, _ = h(msg)
	}
	// Output:
	// req-42
	// x-request-id-7
	// 562830da-39b8-5304-833f-58814b58ea67
	// 562830da-39b8-5304-833f-58814b58ea67
}
