package schema

// ProducerEvent is the body exactly as the real Auth Service writes it:
// these fields, in this order, plain JSON (DESIGN §2). UserEvent is what the
// router makes of it; this is what tools that emulate the producer send
// (`publish`, the benchmark), so their traffic is byte-compatible with
// production.
type ProducerEvent struct {
	ID          string `json:"id"`
	Email       string `json:"email"`
	Username    string `json:"username"`
	Action      string `json:"action"`
	RequestID   string `json:"request_id"`
	Timestamp   string `json:"timestamp"`
	ServiceName string `json:"service_name"`
}

// ProducerServiceName is the service_name the Auth Service sends.
const ProducerServiceName = "gofiber-auth"
