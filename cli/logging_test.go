package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/social/user-events-router/configs"
)

func TestLogsMaskEmails(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	logger := newLogger(configs.Defaults(), &b)
	logger.Info("event", "email", "alice@example.com", "reason", `email: not plausible: "bob.smith@mail.example.org "`)
	out := b.String()
	for _, leak := range []string{"alice@example.com", "bob.smith@"} {
		if strings.Contains(out, leak) {
			t.Errorf("log line leaks %q: %s", leak, out)
		}
	}
	if !strings.Contains(out, `a***@example.com`) || !strings.Contains(out, `b***@mail.example.org`) {
		t.Errorf("masked addresses missing: %s", out)
	}
	if !strings.HasPrefix(out, "{") {
		t.Errorf("default format is not JSON off a terminal: %s", out)
	}
}
