package call

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"redial/internal/media"
)

// DialParams are the channel variables the native engine honours, under
// their FreeSWITCH names.
type DialParams struct {
	CallerIDNumber   string
	CallerIDName     string
	Codecs           []media.Codec
	IgnoreEarlyMedia bool
	RingTimeout      time.Duration
	Headers          map[string]string
	// BridgeTimeout is the destination leg's ring timeout (call_timeout).
	BridgeTimeout time.Duration
	// FromHost overrides the From host (sip_from_host).
	FromHost string
}

// ParseDialParams reads the channel variables of one attempt. Bad values
// are reported as warnings and fall back to defaults: a typo in a caller ID
// variable must not stop a campaign.
func ParseDialParams(vars map[string]string, log *slog.Logger, callRef string) DialParams {
	p := DialParams{
		CallerIDNumber: vars["origination_caller_id_number"],
		CallerIDName:   vars["origination_caller_id_name"],
		RingTimeout:    60 * time.Second,
		BridgeTimeout:  30 * time.Second,
		FromHost:       vars["sip_from_host"],
	}
	if s, ok := vars["absolute_codec_string"]; ok && strings.TrimSpace(s) != "" {
		for _, name := range strings.Split(s, ",") {
			name = strings.TrimSpace(name)
			// FreeSWITCH allows "PCMU@20i" style suffixes.
			if i := strings.IndexAny(name, "@"); i >= 0 {
				name = name[:i]
			}
			c, ok := media.CodecByName(name)
			if !ok || c.Name == media.TelephoneEvent.Name {
				if !ok {
					log.Warn("call: absolute_codec_string: codec not supported, skipped", "call_ref", callRef, "codec", name)
				}
				continue
			}
			p.Codecs = append(p.Codecs, c)
		}
	}
	if len(p.Codecs) == 0 {
		p.Codecs = []media.Codec{media.PCMU, media.PCMA}
	}
	if s, ok := vars["ignore_early_media"]; ok {
		p.IgnoreEarlyMedia = truthy(s)
	}
	p.RingTimeout = seconds(vars, "originate_timeout", p.RingTimeout, log, callRef)
	p.BridgeTimeout = seconds(vars, "call_timeout", p.BridgeTimeout, log, callRef)
	for k, v := range vars {
		if strings.HasPrefix(k, "sip_h_") && len(k) > len("sip_h_") {
			if p.Headers == nil {
				p.Headers = map[string]string{}
			}
			p.Headers[k[len("sip_h_"):]] = v
		}
	}
	return p
}

func seconds(vars map[string]string, key string, def time.Duration, log *slog.Logger, callRef string) time.Duration {
	s, ok := vars[key]
	if !ok || s == "" {
		return def
	}
	n, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || n <= 0 || n > 3600 {
		log.Warn(fmt.Sprintf("call: %s: want seconds (0-3600), got %q; using %v", key, s, def), "call_ref", callRef)
		return def
	}
	return time.Duration(n * float64(time.Second))
}

func truthy(s string) bool {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "1", "yes", "on", "t":
		return true
	}
	return false
}

// ValidateNumber rejects numbers that cannot be a SIP user part. Numbers
// are otherwise free-form: E.164, national, or an extension.
func ValidateNumber(number string) error {
	if number == "" {
		return fmt.Errorf("empty")
	}
	if strings.ContainsAny(number, "@;:<>?&=\"\\ \t\r\n") {
		return fmt.Errorf("%q has characters not allowed in a SIP user part", number)
	}
	return nil
}

// withCallRef is log.With("call_ref", ref), formatting the attribute only
// when the logger first writes: most calls log nothing at the configured
// level, and a text or JSON handler's With costs a copy of its preformatted
// attributes and a few allocations per call.
func withCallRef(log *slog.Logger, ref string) *slog.Logger {
	return slog.New(&lazyAttrHandler{base: log.Handler(), attr: slog.String("call_ref", ref)})
}

// lazyAttrHandler adds attr to base on the first record or derivation.
type lazyAttrHandler struct {
	base slog.Handler
	attr slog.Attr
	once sync.Once
	h    slog.Handler
}

func (l *lazyAttrHandler) handler() slog.Handler {
	l.once.Do(func() { l.h = l.base.WithAttrs([]slog.Attr{l.attr}) })
	return l.h
}

func (l *lazyAttrHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return l.base.Enabled(ctx, level)
}

func (l *lazyAttrHandler) Handle(ctx context.Context, r slog.Record) error {
	return l.handler().Handle(ctx, r)
}

func (l *lazyAttrHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return l.handler().WithAttrs(attrs)
}

func (l *lazyAttrHandler) WithGroup(name string) slog.Handler {
	return l.handler().WithGroup(name)
}
