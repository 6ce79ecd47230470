package runtime

import (
	"fmt"

	"github.com/choreo-go/choreo/internal/engine"
	"github.com/choreo-go/choreo/internal/runtimelink"
)

func init() {
	runtimelink.EngineConfig = func(cfg any) (engine.Config, error) {
		c, ok := cfg.(Config)
		if !ok {
			return engine.Config{}, fmt.Errorf("%w: %T is not a runtime.Config", ErrInvalidConfig, cfg)
		}
		return c.engineConfig()
	}
	runtimelink.DecodeTableValue = decodeTS
}
