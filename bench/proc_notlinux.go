//go:build !linux

package bench

import (
	"os/exec"
	"time"
)

func currentRSS() int64 { return 0 }

func pidCPU(int) time.Duration { return 0 }

func dieWithParent(*exec.Cmd) {}

func systemBusy() time.Duration { return 0 }

func loadAverage() float64 { return 0 }
