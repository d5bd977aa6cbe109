// Package logging names the little logging pgflo's engines do, so that every
// engine takes the same logger. Benthos' *service.Logger satisfies Logger;
// the engines never import Benthos.
package logging

// Logger is where an engine reports what a user should know.
type Logger interface {
	Debugf(format string, args ...any)
	Infof(format string, args ...any)
	Warnf(format string, args ...any)
}

// Nop is a Logger that discards everything.
type Nop struct{}

// Debugf discards the message.
func (Nop) Debugf(string, ...any) {}

// Infof discards the message.
func (Nop) Infof(string, ...any) {}

// Warnf discards the message.
func (Nop) Warnf(string, ...any) {}
