package bench

import (
	"fmt"
	"html"
	"math"
	"slices"
	"strings"
)

// SVG draws the results: on the left every choreo workload's ratio to its
// baseline as a bar (the moved-records ratio for W4, with the goals of
// issue 6 as marks), on the right W4's p50 and p99 latency against the
// event rate (log–log).
func (r *Report) SVG() string {
	type bar struct {
		label string
		ratio float64
		goal  float64
	}
	var bars []bar
	for _, w := range r.Rows {
		if w.Kind != "choreo" || w.Baseline == "" {
			continue
		}
		b := bar{label: w.ID, ratio: w.Ratio}
		if w.MovedBaseline {
			b.label, b.ratio = w.ID+" (moved)", w.MovedRatio
			b.goal = 0.5
		}
		switch {
		case strings.HasPrefix(w.ID, "w2-small"):
			b.goal = 0.8
		case strings.HasPrefix(w.ID, "w5-cold"):
			b.goal = 0.5
		}
		bars = append(bars, b)
	}

	const (
		width   = 980
		leftW   = 560
		rowH    = 26
		top     = 56
		labelW  = 170
		barMaxW = leftW - labelW - 60
	)
	height := max(top+len(bars)*rowH+50, 380)
	var s strings.Builder
	fmt.Fprintf(&s, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		width, height, width, height)
	fmt.Fprintf(&s, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	fmt.Fprintf(&s, `<text x="10" y="20" font-size="15" font-weight="bold">choreo vs its baselines (%s, %s)</text>`+"\n",
		html.EscapeString(string(r.Scale)), html.EscapeString(r.Started.UTC().Format("2006-01-02 15:04 MST")))
	fmt.Fprintf(&s, `<text x="10" y="40" fill="#555">throughput ratio to the baseline (1.0 = as fast as the hand-written loop); | = goal</text>`+"\n")

	maxRatio := 1.2
	for _, b := range bars {
		maxRatio = math.Max(maxRatio, b.ratio*1.05)
	}
	xOf := func(v float64) float64 { return labelW + v/maxRatio*barMaxW }
	// Grid at every 0.25.
	for v := 0.0; v <= maxRatio+1e-9; v += 0.25 {
		x := xOf(v)
		stroke, w := "#ddd", 1.0
		if v == 1 {
			stroke, w = "#333", 1.5
		}
		fmt.Fprintf(&s, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-width="%.1f"/>`+"\n",
			x, top-6, x, top+len(bars)*rowH, stroke, w)
		fmt.Fprintf(&s, `<text x="%.1f" y="%d" text-anchor="middle" fill="#555">%.2g</text>`+"\n", x, top+len(bars)*rowH+16, v)
	}
	for i, b := range bars {
		y := top + i*rowH
		fmt.Fprintf(&s, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", labelW-8, y+15, html.EscapeString(b.label))
		color := "#4c78a8"
		if b.goal > 0 && b.ratio < b.goal {
			color = "#e45756"
		} else if b.goal > 0 {
			color = "#54a24b"
		}
		fmt.Fprintf(&s, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", labelW, y+3, xOf(b.ratio)-labelW, rowH-8, color)
		fmt.Fprintf(&s, `<text x="%.1f" y="%d">%.2f</text>`+"\n", xOf(b.ratio)+4, y+15, b.ratio)
		if b.goal > 0 {
			gx := xOf(b.goal)
			fmt.Fprintf(&s, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="black" stroke-width="2.5"/>`+"\n", gx, y, gx, y+rowH-2)
		}
	}

	// Latency vs rate.
	const (
		px0 = leftW + 70
		px1 = width - 20
		py0 = top
		py1 = 330
	)
	fmt.Fprintf(&s, `<text x="%d" y="40" fill="#555">W4 end-to-end latency vs event rate (log–log)</text>`+"\n", px0-40)
	fmt.Fprintf(&s, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#999"/>`+"\n", px0, py0, px1-px0, py1-py0)
	var pts []LatencyRow
	for _, l := range r.Latency {
		if l.Outputs > 0 {
			pts = append(pts, l)
		}
	}
	if len(pts) == 0 {
		fmt.Fprintf(&s, `<text x="%d" y="%d" fill="#999">no latency runs</text>`+"\n", px0+20, (py0+py1)/2)
		s.WriteString("</svg>\n")
		return s.String()
	}
	lx0, lx1 := 1.0, 5.0 // 10 .. 100k events/s
	ly0, ly1 := 0.0, 5.0 // 1 ms .. 100 s
	for _, l := range pts {
		lx0 = math.Min(lx0, math.Floor(math.Log10(l.Rate)))
		lx1 = math.Max(lx1, math.Ceil(math.Log10(l.Rate)))
		ly0 = math.Min(ly0, math.Floor(math.Log10(math.Max(l.P50, 0.01))))
		ly1 = math.Max(ly1, math.Ceil(math.Log10(math.Max(l.Max, 1))))
	}
	X := func(rate float64) float64 { return px0 + (math.Log10(rate)-lx0)/(lx1-lx0)*float64(px1-px0) }
	Y := func(msv float64) float64 {
		return py1 - (math.Log10(math.Max(msv, math.Pow(10, ly0)))-ly0)/(ly1-ly0)*float64(py1-py0)
	}
	for e := lx0; e <= lx1; e++ {
		x := X(math.Pow(10, e))
		fmt.Fprintf(&s, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#eee"/>`+"\n", x, py0, x, py1)
		fmt.Fprintf(&s, `<text x="%.1f" y="%d" text-anchor="middle" fill="#555">%s/s</text>`+"\n", x, py1+16, fmtRate(math.Pow(10, e)))
	}
	for e := ly0; e <= ly1; e++ {
		y := Y(math.Pow(10, e))
		fmt.Fprintf(&s, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eee"/>`+"\n", px0, y, px1, y)
		fmt.Fprintf(&s, `<text x="%d" y="%.1f" text-anchor="end" fill="#555">%s</text>`+"\n", px0-4, y+4, fmtMillis(math.Pow(10, e)))
	}
	series := []struct {
		name  string
		color string
		v     func(LatencyRow) float64
	}{
		{"p50", "#4c78a8", func(l LatencyRow) float64 { return l.P50 }},
		{"p99", "#e45756", func(l LatencyRow) float64 { return l.P99 }},
	}
	// One pair of lines per guarantee; the second guarantee's dashed.
	var guarantees []Guarantee
	for _, l := range pts {
		if !slices.Contains(guarantees, l.Guarantee) {
			guarantees = append(guarantees, l.Guarantee)
		}
	}
	legend := 0
	for gi, g := range guarantees {
		dash := ""
		if gi > 0 {
			dash = ` stroke-dasharray="6 4"`
		}
		for i, se := range series {
			var path []string
			for _, l := range pts {
				if l.Guarantee == g {
					path = append(path, fmt.Sprintf("%.1f,%.1f", X(l.Rate), Y(se.v(l))))
				}
			}
			fmt.Fprintf(&s, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>`+"\n", strings.Join(path, " "), se.color, dash)
			for _, l := range pts {
				if l.Guarantee != g {
					continue
				}
				fmt.Fprintf(&s, `<circle cx="%.1f" cy="%.1f" r="4" fill="%s"/>`+"\n", X(l.Rate), Y(se.v(l)), se.color)
				if i == 1 && gi == 0 {
					fmt.Fprintf(&s, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#333">%g×</text>`+"\n", X(l.Rate), Y(se.v(l))-9, l.Multiple)
				}
			}
			name := se.name
			if g != "" {
				name += " " + strings.ToUpper(string(g))
			}
			if gi > 0 {
				name += " (dashed)"
			}
			fmt.Fprintf(&s, `<text x="%d" y="%d" fill="%s">%s</text>`+"\n", px0+10, py0+18+16*legend, se.color, name)
			legend++
		}
	}
	fmt.Fprintf(&s, `<text x="%d" y="%d" text-anchor="middle" fill="#555">order-line events per second (× 39/s peak)</text>`+"\n", (px0+px1)/2, py1+34)
	s.WriteString("</svg>\n")
	return s.String()
}

func fmtMillis(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%gs", v/1000)
	}
	return fmt.Sprintf("%gms", v)
}
