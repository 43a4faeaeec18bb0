//go:build !redial_pprof

package app

// registerProfiling adds nothing: the pprof routes exist only in a build
// made with -tags redial_pprof (pprof_on.go).
func registerProfiling(*App) {}
