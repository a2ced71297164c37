package cli

import (
	"fmt"
	"os"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/api/apitest"
)

// fakeMain is the "corral" of the test scripts: the real CLI with the fake
// process manager (apitest.Fake) inside its daemon.
func fakeMain() int {
	self, _ := os.Executable()
	return Main(os.Args, Options{
		Self: self,
		NewBackend: func(DaemonConfig) (api.Backend, func(), error) {
			if os.Getenv("CORRAL_FAKE_FAIL") != "" {
				return nil, nil, fmt.Errorf("fake manager refuses to start")
			}
			return &apitest.Fake{}, nil, nil
		},
	})
}
