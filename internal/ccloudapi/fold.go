package ccloudapi

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// FoldAllOf returns doc with every allOf folded into one schema: the members'
// properties merged (recursively), their required lists joined, their other
// keywords combined, and the keywords beside the allOf kept. The API pages
// use allOf to refine a schema (mark fields required, add examples), which
// for objects means exactly that merge; oapi-codegen, which the client is
// generated with, cannot merge them itself (their readOnly differ, and it
// replaces a property rather than merging it). Two members that set one
// constraint differently are an error; of differing annotations
// (description, example, title, x-*), the first is kept.
func FoldAllOf(doc []byte) ([]byte, error) {
	var v any
	if err := yaml.Unmarshal(doc, &v); err != nil {
		return nil, err
	}
	v, err := fold(v, "")
	if err != nil {
		return nil, err
	}
	return yaml.Marshal(v)
}

func fold(v any, at string) (any, error) {
	switch v := v.(type) {
	case []any:
		for i, e := range v {
			f, err := fold(e, fmt.Sprintf("%s/%d", at, i))
			if err != nil {
				return nil, err
			}
			v[i] = f
		}
		return v, nil
	case map[string]any:
		for k, e := range v {
			f, err := fold(e, at+"/"+k)
			if err != nil {
				return nil, err
			}
			v[k] = f
		}
		members, ok := v["allOf"].([]any)
		if !ok {
			return v, nil
		}
		delete(v, "allOf")
		out := map[string]any{}
		for _, m := range append(members, any(v)) {
			mm, ok := m.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%s: an allOf member is not a schema", at)
			}
			if err := merge(out, mm, at); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return v, nil
}

// merge adds schema b to schema a.
func merge(a, b map[string]any, at string) error {
	for k, bv := range b {
		av, exists := a[k]
		switch {
		case !exists:
			a[k] = bv
		case k == "properties":
			ap, aok := av.(map[string]any)
			bp, bok := bv.(map[string]any)
			if !aok || !bok {
				return fmt.Errorf("%s: properties that are not maps", at)
			}
			for name, bs := range bp {
				as, ok := ap[name]
				if !ok {
					ap[name] = bs
					continue
				}
				asm, aok := as.(map[string]any)
				bsm, bok := bs.(map[string]any)
				if !aok || !bok {
					return fmt.Errorf("%s/%s: a property that is not a schema", at, name)
				}
				if err := merge(asm, bsm, at+"/properties/"+name); err != nil {
					return err
				}
			}
		case k == "required":
			ar, _ := av.([]any)
			br, _ := bv.([]any)
			for _, r := range br {
				if !slices.Contains(ar, r) {
					ar = append(ar, r)
				}
			}
			a[k] = ar
		case annotation(k) || k == "readOnly" && bv == false:
			// the first annotation is kept; readOnly false is its default
		case k == "readOnly" && av == false:
			a[k] = bv
		case !reflect.DeepEqual(av, bv):
			return fmt.Errorf("%s: allOf members set %s differently", at, k)
		}
	}
	return nil
}

func annotation(keyword string) bool {
	switch keyword {
	case "description", "example", "title":
		return true
	}
	return strings.HasPrefix(keyword, "x-")
}
