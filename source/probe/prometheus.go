package probe

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/responder-sre/responder/config"
)

// prometheusCheck runs an instant query; the value is a scalar result or the first sample of a
// vector (write queries that return one series, e.g. with max or sum). No data (an empty vector)
// is a failure. A NaN result (0/0: an error ratio with no requests) is a value like any other:
// firing_when comparisons with NaN are false.
type prometheusCheck struct {
	api   v1.API
	query string
	inst  string
}

func newPrometheusCheck(c *config.PrometheusProbe) (*prometheusCheck, error) {
	u, err := url.Parse(c.URL)
	if err != nil || u.Host == "" {
		return nil, errors.New("prometheus: invalid url")
	}
	client, err := api.NewClient(api.Config{Address: c.URL})
	if err != nil {
		return nil, fmt.Errorf("prometheus: %w", err)
	}
	return &prometheusCheck{
		api:   v1.NewAPI(client),
		query: c.Query,
		inst:  (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String(),
	}, nil
}

func (c *prometheusCheck) instance() string { return c.inst }

func (c *prometheusCheck) check(ctx context.Context) Measurement {
	start := time.Now()
	m := Measurement{Value: math.NaN()}
	v, _, _, err := c.api.Query(ctx, c.query, time.Now())
	m.Duration = time.Since(start)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		m.Err = fmt.Errorf("prometheus %s: query: %w", c.inst, err)
		return m
	}
	value, err := sampleValue(v)
	if err != nil {
		m.Err = fmt.Errorf("prometheus %s: %w", c.inst, err)
		return m
	}
	m.Value = value
	return m
}

// sampleValue extracts the probe value from a query result.
func sampleValue(v model.Value) (float64, error) {
	switch r := v.(type) {
	case *model.Scalar:
		return float64(r.Value), nil
	case model.Vector:
		if len(r) == 0 {
			return 0, errors.New("the query returned no data")
		}
		return float64(r[0].Value), nil
	case nil:
		return 0, errors.New("the query returned no data")
	default:
		return 0, fmt.Errorf("the query returned a %s; want a scalar or an instant vector", v.Type())
	}
}
