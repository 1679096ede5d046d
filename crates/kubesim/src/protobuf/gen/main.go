// Command gen prints kubesim's protobuf schema (crates/kubesim/src/protobuf/schema.txt):
// for each built-in kind of the group versions kubesim serves, the protobuf
// field numbers, JSON names and shapes of every message it reaches, read by
// reflection from the Go types' struct tags (the types the real API server
// decodes into). Regenerate after changing the served group versions or the
// Kubernetes version:
//
//	cd crates/kubesim/src/protobuf/gen && go run . > ../schema.txt
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"

	"k8s.io/client-go/kubernetes/scheme"
)

// The group versions whose kinds are decoded.
var served = map[string]bool{
	"v1": true, "apps/v1": true, "batch/v1": true, "policy/v1": true, "policy/v1beta1": true,
	"rbac.authorization.k8s.io/v1": true, "scheduling.k8s.io/v1": true, "storage.k8s.io/v1": true,
	"coordination.k8s.io/v1": true, "events.k8s.io/v1": true, "discovery.k8s.io/v1": true,
	"networking.k8s.io/v1": true, "autoscaling/v1": true, "autoscaling/v2": true,
}

// Types with their own JSON form, by package path and name.
var special = map[string]string{
	"k8s.io/apimachinery/pkg/apis/meta/v1.Time":       "time",
	"k8s.io/apimachinery/pkg/apis/meta/v1.MicroTime":  "microtime",
	"k8s.io/apimachinery/pkg/apis/meta/v1.Duration":   "duration",
	"k8s.io/apimachinery/pkg/apis/meta/v1.FieldsV1":   "raw",
	"k8s.io/apimachinery/pkg/runtime.RawExtension":    "raw",
	"k8s.io/apimachinery/pkg/api/resource.Quantity":   "quantity",
	"k8s.io/apimachinery/pkg/util/intstr.IntOrString": "intorstring",
}

func name(t reflect.Type) string {
	p := t.PkgPath()
	p = strings.TrimPrefix(p, "k8s.io/api/")
	p = strings.TrimPrefix(p, "k8s.io/apimachinery/pkg/apis/")
	p = strings.TrimPrefix(p, "k8s.io/apimachinery/pkg/")
	return p + "." + t.Name()
}

var (
	done  = map[reflect.Type]bool{}
	queue []reflect.Type
	out   = map[string][]string{}
)

var marshaler = reflect.TypeOf((*json.Marshaler)(nil)).Elem()

func kind(t reflect.Type) string {
	if k, ok := special[t.PkgPath()+"."+t.Name()]; ok {
		return k
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "bool"
	case reflect.Int32, reflect.Int64, reflect.Int:
		return "int"
	case reflect.Float64:
		return "double"
	case reflect.Struct:
		if t.Implements(marshaler) || reflect.PointerTo(t).Implements(marshaler) {
			panic("unhandled JSON marshaler " + t.String())
		}
		if !done[t] {
			done[t] = true
			queue = append(queue, t)
		}
		return name(t)
	}
	panic("unhandled type " + t.String())
}

func message(t reflect.Type) {
	var lines []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		pb := f.Tag.Get("protobuf")
		js := strings.Split(f.Tag.Get("json"), ",")
		if pb == "" {
			if f.Anonymous && js[0] == "" && f.Type.Name() == "TypeMeta" {
				continue
			}
			if f.Tag.Get("json") == "-" {
				continue
			}
			panic(fmt.Sprintf("%s.%s: no protobuf tag", t, f.Name))
		}
		parts := strings.Split(pb, ",")
		tag := parts[1]
		jsonName := js[0]
		inline := false
		if jsonName == "" {
			// `json:",inline"`: a nested message whose fields sit in the parent's JSON.
			// (`json:""` on an embedded struct inlines it too, as encoding/json does).
			if !f.Anonymous || f.Type.Kind() != reflect.Struct {
				panic(fmt.Sprintf("%s.%s: no JSON name", t, f.Name))
			}
			inline, jsonName = true, "-"
		}
		omitempty := false
		for _, o := range js[1:] {
			omitempty = omitempty || o == "omitempty"
		}
		ft := f.Type
		pointer := ft.Kind() == reflect.Pointer
		if pointer {
			ft = ft.Elem()
		}
		shape, k := ".", ""
		switch {
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Uint8:
			k = "bytes"
		case ft.Kind() == reflect.Slice:
			shape, k = "[]", kind(ft.Elem())
		case ft.Kind() == reflect.Map:
			if ft.Key().Kind() != reflect.String {
				panic(fmt.Sprintf("%s.%s: map key %s", t, f.Name, ft.Key()))
			}
			v := ft.Elem()
			switch {
			case v.Kind() == reflect.Slice && v.Elem().Kind() == reflect.Uint8:
				shape, k = "{}", "bytes"
			case v.Kind() == reflect.Slice:
				// A named list as a map value is a message of `repeated items = 1`.
				shape, k = "{[]}", kind(v.Elem())
			default:
				shape, k = "{}", kind(v)
			}
		default:
			k = kind(ft)
		}
		if inline {
			shape = "^"
		}
		flag := ""
		if omitempty && !pointer && shape == "." && (k == "string" || k == "bool" || k == "int" || k == "double" || k == "bytes") {
			flag = " z"
		}
		lines = append(lines, fmt.Sprintf(" %s %s %s %s%s", tag, jsonName, shape, k, flag))
	}
	out[name(t)] = lines
}

func main() {
	var roots []string
	for gvk, t := range scheme.Scheme.AllKnownTypes() {
		gv := gvk.GroupVersion().String()
		if !served[gv] || strings.HasSuffix(gvk.Kind, "List") || gvk.Kind == "WatchEvent" {
			continue
		}
		if gvk.Version == "__internal" || t.Kind() != reflect.Struct {
			continue
		}
		roots = append(roots, fmt.Sprintf("root %s %s %s", gv, gvk.Kind, kind(t)))
	}
	for len(queue) > 0 {
		t := queue[0]
		queue = queue[1:]
		message(t)
	}
	sort.Strings(roots)
	names := make([]string, 0, len(out))
	for n := range out {
		names = append(names, n)
	}
	sort.Strings(names)
	w := os.Stdout
	fmt.Fprintln(w, "# Generated by crates/kubesim/src/protobuf/gen from k8s.io/api v0.37.2; do not edit.")
	fmt.Fprintln(w, "# root <apiVersion> <kind> <message>; msg <message>, then per field: <tag> <json name> <shape: . [] {} {[]} ^ (inlined)> <kind> [z: omitted when zero]")
	for _, r := range roots {
		fmt.Fprintln(w, r)
	}
	for _, n := range names {
		fmt.Fprintln(w, "msg "+n)
		for _, l := range out[n] {
			fmt.Fprintln(w, l)
		}
	}
}
