package mallocenv

import (
	"os"
	"testing"
)

// The test binary itself goes through Ensure: afterwards the variable is set
// (by the re-executed process's environment, or the user's).
func TestMain(m *testing.M) {
	Ensure()
	os.Exit(m.Run())
}

func TestVariableIsSet(t *testing.T) {
	if _, set := os.LookupEnv(Variable); !set {
		t.Fatalf("%s is not set after Ensure", Variable)
	}
}
