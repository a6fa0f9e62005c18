package rules

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/prometheus/common/helpers/templates"
)

// The template functions of Prometheus's alerting templates, with their output, so a page reads
// "7%" where the raw value would print 7.000000000000001, and an operator's habits from
// Prometheus carry over: humanize(x) (SI prefixes, 4 significant digits), humanizePercentage(x)
// (a ratio as a percentage), humanizeDuration(x) (seconds, or a duration such as
// alert.activeFor, as "1d 2h 3m 4s") and printf(format, args...) (fmt.Sprintf).

// number converts a template function's argument: a number, a numeric string, or a duration (in
// seconds).
func number(name string, v any) (float64, error) {
	if d, ok := v.(time.Duration); ok {
		return d.Seconds(), nil
	}
	f, err := templates.ConvertToFloat(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return f, nil
}

func fnHumanize(params ...any) (any, error) {
	v, err := number("humanize", params[0])
	if err != nil {
		return nil, err
	}
	return humanize(v), nil
}

// humanize is Prometheus's humanize: SI prefixes from y to Y, %.4g.
func humanize(v float64) string {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Sprintf("%.4g", v)
	}
	prefix := ""
	if math.Abs(v) >= 1 {
		for _, p := range []string{"k", "M", "G", "T", "P", "E", "Z", "Y"} {
			if math.Abs(v) < 1000 {
				break
			}
			prefix, v = p, v/1000
		}
		return fmt.Sprintf("%.4g%s", v, prefix)
	}
	for _, p := range []string{"m", "u", "n", "p", "f", "a", "z", "y"} {
		if math.Abs(v) >= 1 {
			break
		}
		prefix, v = p, v*1000
	}
	return fmt.Sprintf("%.4g%s", v, prefix)
}

func fnHumanizePercentage(params ...any) (any, error) {
	v, err := number("humanizePercentage", params[0])
	if err != nil {
		return nil, err
	}
	return fmt.Sprintf("%.4g%%", v*100), nil
}

func fnHumanizeDuration(params ...any) (any, error) {
	v, err := number("humanizeDuration", params[0])
	if err != nil {
		return nil, err
	}
	return templates.HumanizeDuration(v)
}

func fnPrintf(params ...any) (any, error) {
	format, ok := params[0].(string)
	if !ok {
		return nil, errors.New("printf: the format must be a string")
	}
	return fmt.Sprintf(format, params[1:]...), nil
}
