// gitops-health reads Kubernetes objects (a JSON array on stdin) and prints, for each, what
// Argo CD's Lua health check (the script named by -lua, run with gopher-lua as Argo CD runs
// it: the object in the global `obj`, the returned table's status and message) and Flux's
// kstatus (sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute) say about it, as a JSON array.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

type result struct {
	Kind    string  `json:"kind"`
	Name    string  `json:"name"`
	Argo    verdict `json:"argo"`
	Kstatus verdict `json:"kstatus"`
}

func main() {
	script := flag.String("lua", "", "Argo CD health check script (Lua)")
	flag.Parse()
	src, err := os.ReadFile(*script)
	if err != nil {
		fail(err)
	}
	var objects []map[string]interface{}
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err)
	}
	// apimachinery's decoder, as client-go's: whole numbers become int64, as kstatus expects.
	if err := utiljson.Unmarshal(in, &objects); err != nil {
		fail(fmt.Errorf("reading objects from stdin: %w", err))
	}
	out := []result{}
	for _, obj := range objects {
		u := &unstructured.Unstructured{Object: obj}
		argo, err := argoHealth(string(src), obj)
		if err != nil {
			fail(fmt.Errorf("%s %s: lua: %w", u.GetKind(), u.GetName(), err))
		}
		ks, err := status.Compute(u)
		if err != nil {
			fail(fmt.Errorf("%s %s: kstatus: %w", u.GetKind(), u.GetName(), err))
		}
		out = append(out, result{
			Kind:    u.GetKind(),
			Name:    u.GetName(),
			Argo:    argo,
			Kstatus: verdict{Status: ks.Status.String(), Message: ks.Message},
		})
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		fail(err)
	}
}

// argoHealth runs the script the way Argo CD's util/lua does: safe standard libraries only,
// the object as the global `obj`, the script's return value a table {status, message}.
func argoHealth(script string, obj map[string]interface{}) (verdict, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		fn   lua.LGFunction
	}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}, {lua.StringLibName, lua.OpenString}, {lua.MathLibName, lua.OpenMath}} {
		l.Push(l.NewFunction(lib.fn))
		l.Push(lua.LString(lib.name))
		l.Call(1, 0)
	}
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(script); err != nil {
		return verdict{}, err
	}
	ret, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return verdict{}, fmt.Errorf("the script returned %s, not a table", l.Get(-1).Type())
	}
	return verdict{
		Status:  lua.LVAsString(ret.RawGetString("status")),
		Message: lua.LVAsString(ret.RawGetString("message")),
	}, nil
}

// toLua converts decoded JSON to Lua values as Argo CD's decodeValue does (arrays are
// 1-based tables, numbers are LNumber).
func toLua(l *lua.LState, v interface{}) lua.LValue {
	switch v := v.(type) {
	case map[string]interface{}:
		t := l.NewTable()
		for k, item := range v {
			t.RawSetString(k, toLua(l, item))
		}
		return t
	case []interface{}:
		t := l.NewTable()
		for i, item := range v {
			t.RawSetInt(i+1, toLua(l, item))
		}
		return t
	case string:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case bool:
		return lua.LBool(v)
	default:
		return lua.LNil
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "gitops-health:", err)
	os.Exit(1)
}
