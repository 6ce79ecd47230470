package runtime

import (
	"github.com/choreo-go/choreo/internal/engine"
	"github.com/choreo-go/choreo/internal/runtimelink"
)

func init() {
	runtimelink.EngineConfig = func(cfg any) (engine.Config, bool) {
		c, ok := cfg.(Config)
		if !ok {
			return engine.Config{}, false
		}
		return c.engineConfig(), true
	}
	runtimelink.DecodeTableValue = decodeTS
}
