package service

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/upstream"
)

// The upstream's literals for each extensible enum. A literal missing here maps to
// the enum's UNSPECIFIED value, and the literal itself still reaches the caller in
// the sibling <field>_raw (see common.proto).
var (
	contentFormats = map[string]pluginv1.ContentFormat{
		"ZIP": pluginv1.ContentFormat_CONTENT_FORMAT_ZIP,
		"JAR": pluginv1.ContentFormat_CONTENT_FORMAT_JAR,
	}
	connectorTypes = map[string]pluginv1.ConnectorType{
		"SOURCE": pluginv1.ConnectorType_CONNECTOR_TYPE_SOURCE,
		"SINK":   pluginv1.ConnectorType_CONNECTOR_TYPE_SINK,
	}
	uploadLocations = map[string]pluginv1.UploadLocation{
		"PRESIGNED_URL_LOCATION": pluginv1.UploadLocation_UPLOAD_LOCATION_PRESIGNED_URL,
	}
	versionPhases = map[string]pluginv1.VersionPhase{
		"PROCESSING": pluginv1.VersionPhase_VERSION_PHASE_PROCESSING,
		"READY":      pluginv1.VersionPhase_VERSION_PHASE_READY,
		"FAILED":     pluginv1.VersionPhase_VERSION_PHASE_FAILED,
	}
	clouds = map[string]pluginv1.Cloud{
		"AWS":   pluginv1.Cloud_CLOUD_AWS,
		"GCP":   pluginv1.Cloud_CLOUD_GCP,
		"AZURE": pluginv1.Cloud_CLOUD_AZURE,
	}
	runtimeLanguages = map[string]pluginv1.RuntimeLanguage{
		"JAVA":   pluginv1.RuntimeLanguage_RUNTIME_LANGUAGE_JAVA,
		"PYTHON": pluginv1.RuntimeLanguage_RUNTIME_LANGUAGE_PYTHON,
	}
)

// enumOf reads an extensible upstream enum: the typed value (zero when raw is
// absent or unknown) and the raw literal to carry beside it (nil when absent).
func enumOf[E ~int32](raw *string, known map[string]E) (E, *string) {
	if raw == nil {
		return 0, nil
	}
	return known[*raw], raw
}

func pluginVersionToProto(v *upstream.PluginVersion) *pluginv1.CustomConnectPluginVersion {
	out := &pluginv1.CustomConnectPluginVersion{
		ApiVersion: v.APIVersion,
		Kind:       v.Kind,
		Id:         v.ID,
		Metadata:   objectMetaToProto(v.Metadata),
	}
	if s := v.Spec; s != nil {
		spec := &pluginv1.CustomConnectPluginVersionSpec{
			Version:                   s.Version,
			SensitiveConfigProperties: s.SensitiveConfigProperties,
			DocumentationLink:         s.DocumentationLink,
			UploadSource:              uploadSourceToProto(s.UploadSource),
		}
		spec.ContentFormat, spec.ContentFormatRaw = enumOf(s.ContentFormat, contentFormats)
		for _, c := range s.ConnectorClasses {
			cc := &pluginv1.ConnectorClass{ClassName: c.ClassName}
			cc.Type, cc.TypeRaw = enumOf(c.Type, connectorTypes)
			spec.ConnectorClasses = append(spec.ConnectorClasses, cc)
		}
		if e := s.Environment; e != nil {
			spec.Environment = &pluginv1.EnvScopedObjectReference{
				Id:           e.ID,
				Environment:  e.Environment,
				Related:      e.Related,
				ResourceName: e.ResourceName,
			}
		}
		out.Spec = spec
	}
	if s := v.Status; s != nil {
		st := &pluginv1.CustomConnectPluginVersionStatus{ErrorMessage: s.ErrorMessage}
		st.Phase, st.PhaseRaw = enumOf(s.Phase, versionPhases)
		out.Status = st
	}
	return out
}

func connectorPluginToProto(p *upstream.ConnectorPlugin) *pluginv1.CustomConnectorPlugin {
	out := &pluginv1.CustomConnectorPlugin{
		ApiVersion:                p.APIVersion,
		Kind:                      p.Kind,
		Id:                        p.ID,
		Metadata:                  objectMetaToProto(p.Metadata),
		DisplayName:               p.DisplayName,
		Description:               p.Description,
		DocumentationLink:         p.DocumentationLink,
		ConnectorClass:            p.ConnectorClass,
		SensitiveConfigProperties: p.SensitiveConfigProperties,
		UploadSource:              uploadSourceToProto(p.UploadSource),
	}
	out.ContentFormat, out.ContentFormatRaw = enumOf(p.ContentFormat, contentFormats)
	out.ConnectorType, out.ConnectorTypeRaw = enumOf(p.ConnectorType, connectorTypes)
	out.Cloud, out.CloudRaw = enumOf(p.Cloud, clouds)
	out.RuntimeLanguage, out.RuntimeLanguageRaw = enumOf(p.RuntimeLanguage, runtimeLanguages)
	return out
}

func objectMetaToProto(m *upstream.ObjectMeta) *pluginv1.ObjectMeta {
	if m == nil {
		return nil
	}
	return &pluginv1.ObjectMeta{
		Self:         m.Self,
		ResourceName: m.ResourceName,
		CreatedAt:    timestamp(m.CreatedAt),
		UpdatedAt:    timestamp(m.UpdatedAt),
		DeletedAt:    timestamp(m.DeletedAt),
	}
}

func uploadSourceToProto(u *upstream.UploadSource) *pluginv1.UploadSource {
	if u == nil {
		return nil
	}
	out := &pluginv1.UploadSource{UploadId: u.UploadID}
	out.Location, out.LocationRaw = enumOf(u.Location, uploadLocations)
	return out
}

func timestamp(t *time.Time) *timestamppb.Timestamp {
	if t == nil {
		return nil
	}
	return timestamppb.New(*t)
}
