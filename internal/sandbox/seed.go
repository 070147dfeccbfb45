package sandbox

import "time"

// organization is the made-up organization owning every seeded resource.
const organization = "5e2b8f3a-91c4-4d7e-b6a0-3f1d2c9e8b47"

const (
	versionAPI   = "ccpm/v1"
	versionKind  = "CustomConnectPluginVersion"
	pluginAPI    = "connect/v1"
	pluginKind   = "CustomConnectorPlugin"
	presignedURL = "PRESIGNED_URL_LOCATION"
)

type versionKey struct{ pluginID, id, environment string }

// seedStore holds the seeded resources. It is built once per Server and never
// modified afterwards, so it needs no lock.
type seedStore struct {
	plugins    map[string]connectorPlugin
	versions   map[versionKey]versionSeed
	pluginEnvs map[[2]string]bool // {plugin id, environment} that have versions
	synthetic  bool               // WithSyntheticIDs
}

func (st *seedStore) plugin(id string) (connectorPlugin, bool) {
	if p, ok := st.plugins[id]; ok {
		return p, true
	}
	return st.syntheticPlugin(id)
}

func (st *seedStore) version(pluginID, id, env string) (versionSeed, bool) {
	if v, ok := st.versions[versionKey{pluginID, id, env}]; ok {
		return v, true
	}
	return st.syntheticVersion(pluginID, id, env)
}

func (st *seedStore) pluginInEnvironment(pluginID, env string) bool {
	return st.pluginEnvs[[2]string{pluginID, env}] ||
		st.synthetic && env == Environment && isSynthetic(pluginID, SyntheticPluginPrefix)
}

func newSeedStore() *seedStore {
	st := &seedStore{
		plugins:    map[string]connectorPlugin{},
		versions:   map[versionKey]versionSeed{},
		pluginEnvs: map[[2]string]bool{},
	}
	for _, p := range seedPlugins() {
		st.plugins[p.ID] = p
	}
	for _, s := range seedVersions() {
		env := s.v.Spec.Environment.ID
		st.versions[versionKey{s.pluginID, s.v.ID, env}] = s
		st.pluginEnvs[[2]string{s.pluginID, env}] = true
	}
	return st
}

func seedPlugins() []connectorPlugin {
	return []connectorPlugin{
		{
			APIVersion:                pluginAPI,
			Kind:                      pluginKind,
			ID:                        PluginID,
			Metadata:                  pluginMeta(PluginID, at(2024, 3, 4, 9, 15, 0), at(2024, 6, 11, 14, 2, 37)),
			DisplayName:               "Datagen Source",
			ContentFormat:             "ZIP",
			Description:               "Generates mock records for development and testing, seeded by the sandbox.",
			DocumentationLink:         "https://github.com/confluentinc/kafka-connect-datagen",
			ConnectorClass:            "io.confluent.kafka.connect.datagen.DatagenConnector",
			ConnectorType:             "SOURCE",
			Cloud:                     "AWS",
			SensitiveConfigProperties: []string{"passwords", "keys", "tokens"},
			UploadSource:              uploadSource{Location: presignedURL},
			RuntimeLanguage:           "JAVA",
		},
		{
			APIVersion:                pluginAPI,
			Kind:                      pluginKind,
			ID:                        FailedPluginID,
			Metadata:                  pluginMeta(FailedPluginID, at(2024, 9, 2, 16, 40, 12), at(2024, 9, 3, 8, 5, 0)),
			DisplayName:               "Webhook Sink",
			ContentFormat:             "JAR",
			Description:               "Posts Kafka records to an HTTP endpoint, built on the Python connector runtime.",
			DocumentationLink:         "https://github.com/acme/webhook-sink-connector",
			ConnectorClass:            "com.acme.connect.webhook.WebhookSinkConnector",
			ConnectorType:             "SINK",
			Cloud:                     "GCP",
			SensitiveConfigProperties: []string{"webhook.auth.token", "webhook.tls.key.password"},
			UploadSource:              uploadSource{Location: presignedURL},
			RuntimeLanguage:           "PYTHON",
		},
		{
			APIVersion:                pluginAPI,
			Kind:                      pluginKind,
			ID:                        UnknownEnumsPluginID,
			Metadata:                  pluginMeta(UnknownEnumsPluginID, at(2025, 1, 20, 11, 0, 0), at(2025, 1, 21, 7, 30, 45)),
			DisplayName:               "Record Reshaper",
			ContentFormat:             "TAR",
			Description:               "Reshapes records in flight; carries enum values the upstream does not document yet.",
			DocumentationLink:         "https://github.com/acme/record-reshaper",
			ConnectorClass:            "dev.acme.transform.Reshape",
			ConnectorType:             "TRANSFORM",
			Cloud:                     "ORACLE",
			SensitiveConfigProperties: []string{"reshape.license.key"},
			UploadSource:              uploadSource{Location: "GIT_REPOSITORY_LOCATION"},
			RuntimeLanguage:           "RUST",
		},
		{
			// Only the fields the specification requires.
			APIVersion:     pluginAPI,
			Kind:           pluginKind,
			ID:             MinimalPluginID,
			DisplayName:    "Minimal Source",
			ConnectorClass: "com.acme.connect.minimal.MinimalSourceConnector",
			ConnectorType:  "SOURCE",
			UploadSource:   uploadSource{Location: presignedURL},
		},
	}
}

func seedVersions() []versionSeed {
	deleted := versionMeta(PluginID, DeletedVersionID, at(2024, 3, 4, 9, 15, 0), at(2024, 6, 11, 14, 2, 37))
	deleted.DeletedAt = at(2024, 6, 11, 14, 2, 37)

	return []versionSeed{
		{PluginID, pluginVersion{
			APIVersion: versionAPI,
			Kind:       versionKind,
			ID:         VersionID,
			Metadata:   versionMeta(PluginID, VersionID, at(2024, 6, 11, 13, 58, 2), at(2024, 6, 11, 14, 1, 19)),
			Spec:       datagenSpec("0.6.5"),
			Status:     versionStatus{Phase: "READY"},
		}},
		{PluginID, pluginVersion{
			APIVersion: versionAPI,
			Kind:       versionKind,
			ID:         DeletedVersionID,
			Metadata:   deleted,
			Spec:       datagenSpec("0.6.4"),
			Status:     versionStatus{Phase: "READY"},
		}},
		{FailedPluginID, pluginVersion{
			APIVersion: versionAPI,
			Kind:       versionKind,
			ID:         FailedVersionID,
			Metadata:   versionMeta(FailedPluginID, FailedVersionID, at(2024, 9, 3, 8, 1, 44), at(2024, 9, 3, 8, 5, 0)),
			Spec: versionSpec{
				Version:                   "1.4.0-rc.2",
				SensitiveConfigProperties: []string{"webhook.auth.token", "webhook.tls.key.password"},
				DocumentationLink:         "https://github.com/acme/webhook-sink-connector",
				ContentFormat:             "JAR",
				ConnectorClasses:          []connectorClass{{ClassName: "com.acme.connect.webhook.WebhookSinkConnector", Type: "SINK"}},
				UploadSource:              uploadSource{Location: presignedURL},
				Environment:               fullEnvRef(Environment),
			},
			Status: versionStatus{
				Phase:        "FAILED",
				ErrorMessage: "Version creation failed due to invalid plugin archive: no connector class found in the archive.",
			},
		}},
		{UnknownEnumsPluginID, pluginVersion{
			APIVersion: versionAPI,
			Kind:       versionKind,
			ID:         UnknownEnumsVersionID,
			Metadata:   versionMeta(UnknownEnumsPluginID, UnknownEnumsVersionID, at(2025, 1, 21, 7, 29, 3), at(2025, 1, 21, 7, 30, 45)),
			Spec: versionSpec{
				Version:                   "0.1.0-alpha.1",
				SensitiveConfigProperties: []string{"reshape.license.key"},
				DocumentationLink:         "https://github.com/acme/record-reshaper",
				ContentFormat:             "TAR",
				ConnectorClasses:          []connectorClass{{ClassName: "dev.acme.transform.Reshape", Type: "TRANSFORM"}},
				UploadSource:              uploadSource{Location: "GIT_REPOSITORY_LOCATION"},
				Environment:               fullEnvRef(Environment),
			},
			Status: versionStatus{Phase: "VALIDATING"},
		}},
		changing(ProcessingVersionID, "0.7.0-rc.1", at(2025, 3, 2, 10, 0, 0)),
		changing(FailingVersionID, "0.7.0-rc.2", at(2025, 3, 2, 11, 0, 0)),
		{MinimalPluginID, pluginVersion{
			// Only the fields the specification requires.
			APIVersion: versionAPI,
			Kind:       versionKind,
			ID:         MinimalVersionID,
			Spec: versionSpec{
				Version:          "1.0.0",
				ConnectorClasses: []connectorClass{{ClassName: "com.acme.connect.minimal.MinimalSourceConnector", Type: "SOURCE"}},
				UploadSource:     uploadSource{Location: presignedURL},
				Environment: envReference{
					ID:           Environment,
					ResourceName: envCRN(Environment),
				},
			},
			Status: versionStatus{Phase: "PROCESSING"},
		}},
	}
}

func at(year int, month time.Month, day, hour, minute, second int) time.Time {
	return time.Date(year, month, day, hour, minute, second, 0, time.UTC)
}

// pluginMeta and versionMeta leave Self empty: it depends on the address the
// client used and is filled in by render.
func pluginMeta(id string, created, updated time.Time) *objectMeta {
	return &objectMeta{
		ResourceName: "crn://confluent.cloud/organization=" + organization + "/custom-connector-plugin=" + id,
		CreatedAt:    created,
		UpdatedAt:    updated,
	}
}

func versionMeta(pluginID, id string, created, updated time.Time) *objectMeta {
	return &objectMeta{
		ResourceName: envCRN(Environment) + "/custom-connect-plugin=" + pluginID + "/version=" + id,
		CreatedAt:    created,
		UpdatedAt:    updated,
	}
}

// changing is a version of PluginID whose phase the lifecycle sets when it
// is read.
func changing(id, version string, created time.Time) versionSeed {
	return versionSeed{PluginID, pluginVersion{
		APIVersion: versionAPI,
		Kind:       versionKind,
		ID:         id,
		Metadata:   versionMeta(PluginID, id, created, created),
		Spec:       datagenSpec(version),
		Status:     versionStatus{Phase: "PROCESSING"},
	}}
}

// datagenSpec is the spec of PluginID's versions (the Datagen source
// connector) at the given version.
func datagenSpec(version string) versionSpec {
	return versionSpec{
		Version:                   version,
		SensitiveConfigProperties: []string{"passwords", "keys", "tokens"},
		DocumentationLink:         "https://github.com/confluentinc/kafka-connect-datagen",
		ContentFormat:             "ZIP",
		ConnectorClasses:          []connectorClass{{ClassName: "io.confluent.kafka.connect.datagen.DatagenConnector", Type: "SOURCE"}},
		UploadSource:              uploadSource{Location: presignedURL},
		Environment:               fullEnvRef(Environment),
	}
}

func envCRN(env string) string {
	return "crn://confluent.cloud/organization=" + organization + "/environment=" + env
}

// fullEnvRef also sets the optional environment field, which the upstream
// documents as "environment of the referred resource, if env-scoped".
func fullEnvRef(env string) envReference {
	return envReference{ID: env, Environment: env, ResourceName: envCRN(env)}
}
