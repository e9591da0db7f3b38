-- LEC registry schema (seed tables 6-26), sqlite. Generated from lec/registry/schema.py; tests check it is current.

CREATE TABLE anomalies (
	id VARCHAR(64) NOT NULL, 
	community_id VARCHAR(128), 
	device_id VARCHAR(128), 
	flow_id VARCHAR(128), 
	kind VARCHAR(32) NOT NULL, 
	detected_at DATETIME NOT NULL, 
	ts DATETIME, 
	detail TEXT, 
	status VARCHAR(16) NOT NULL, 
	PRIMARY KEY (id)
);

CREATE TABLE communities (
	id VARCHAR(128) NOT NULL, 
	name VARCHAR(256) NOT NULL, 
	kind VARCHAR(16) NOT NULL, 
	description TEXT, 
	timezone VARCHAR(64) NOT NULL, 
	primary_substation VARCHAR(64), 
	latitude FLOAT, 
	longitude FLOAT, 
	active BOOLEAN NOT NULL, 
	PRIMARY KEY (id)
);

CREATE TABLE registry_revision (
	id INTEGER NOT NULL, 
	revision INTEGER NOT NULL, 
	PRIMARY KEY (id)
);

CREATE TABLE roles (
	id INTEGER NOT NULL, 
	code VARCHAR(64) NOT NULL, 
	description TEXT NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (code)
);

CREATE TABLE suppliers (
	id VARCHAR(128) NOT NULL, 
	name VARCHAR(256) NOT NULL, 
	kind VARCHAR(32), 
	contact_email VARCHAR(256), 
	password_hash VARCHAR(256), 
	ssh_public_keys TEXT, 
	active BOOLEAN NOT NULL, 
	PRIMARY KEY (id)
);

CREATE TABLE t_datasyntax (
	id INTEGER NOT NULL, 
	code VARCHAR(64) NOT NULL, 
	description TEXT NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (code)
);

CREATE TABLE t_derivedtimeseriestype (
	id INTEGER NOT NULL, 
	code VARCHAR(64) NOT NULL, 
	description TEXT NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (code)
);

CREATE TABLE t_devicestatus (
	id INTEGER NOT NULL, 
	code VARCHAR(64) NOT NULL, 
	description TEXT NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (code)
);

CREATE TABLE t_frequence (
	id INTEGER NOT NULL, 
	code VARCHAR(64) NOT NULL, 
	description TEXT NOT NULL, 
	seconds INTEGER, 
	cron VARCHAR(64), 
	PRIMARY KEY (id), 
	UNIQUE (code)
);

CREATE TABLE t_gdprclassification (
	id INTEGER NOT NULL, 
	code VARCHAR(64) NOT NULL, 
	description TEXT NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (code)
);

CREATE TABLE t_identificationmethod (
	id INTEGER NOT NULL, 
	code VARCHAR(64) NOT NULL, 
	description TEXT NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (code)
);

CREATE TABLE t_measurementtype (
	id INTEGER NOT NULL, 
	code VARCHAR(64) NOT NULL, 
	description TEXT NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (code)
);

CREATE TABLE t_periodtype (
	id INTEGER NOT NULL, 
	code VARCHAR(64) NOT NULL, 
	description TEXT NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (code)
);

CREATE TABLE t_usetype (
	id INTEGER NOT NULL, 
	code VARCHAR(64) NOT NULL, 
	description TEXT NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (code)
);

CREATE TABLE users (
	id VARCHAR(128) NOT NULL, 
	name VARCHAR(256) NOT NULL, 
	email VARCHAR(256), 
	fiscal_code VARCHAR(32), 
	active BOOLEAN NOT NULL, 
	created_at DATETIME, 
	PRIMARY KEY (id)
);

CREATE TABLE clustergroups (
	id VARCHAR(128) NOT NULL, 
	community_id VARCHAR(128) NOT NULL, 
	user_id VARCHAR(128), 
	kind VARCHAR(16) NOT NULL, 
	n_clusters INTEGER NOT NULL, 
	period_start DATETIME, 
	period_end DATETIME, 
	created_at DATETIME, 
	params JSON, 
	PRIMARY KEY (id), 
	FOREIGN KEY(community_id) REFERENCES communities (id) ON DELETE CASCADE, 
	FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE
);

CREATE TABLE derivedtimeseries (
	id VARCHAR(128) NOT NULL, 
	community_id VARCHAR(128) NOT NULL, 
	user_id VARCHAR(128), 
	derivedtimeseriestype VARCHAR(64) NOT NULL, 
	periodtype VARCHAR(16) NOT NULL, 
	lake_table VARCHAR(128) NOT NULL, 
	description TEXT, 
	PRIMARY KEY (id), 
	FOREIGN KEY(community_id) REFERENCES communities (id) ON DELETE CASCADE, 
	FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE
);

CREATE TABLE devices (
	id VARCHAR(128) NOT NULL, 
	community_id VARCHAR(128) NOT NULL, 
	user_id VARCHAR(128), 
	supplier_id VARCHAR(128) NOT NULL, 
	name VARCHAR(256), 
	devicestatus VARCHAR(64) NOT NULL, 
	usetype VARCHAR(64), 
	identificationmethod VARCHAR(64), 
	manufacturer VARCHAR(128), 
	model VARCHAR(128), 
	latitude FLOAT, 
	longitude FLOAT, 
	altitude FLOAT, 
	address VARCHAR(512), 
	start_ts DATETIME, 
	end_ts DATETIME, 
	rated_power_w FLOAT, 
	PRIMARY KEY (id), 
	FOREIGN KEY(community_id) REFERENCES communities (id) ON DELETE CASCADE, 
	FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE SET NULL, 
	FOREIGN KEY(supplier_id) REFERENCES suppliers (id)
);

CREATE TABLE statute_rules (
	community_id VARCHAR(128) NOT NULL, 
	version INTEGER NOT NULL, 
	effective_from DATETIME NOT NULL, 
	producers_bps INTEGER NOT NULL, 
	consumers_bps INTEGER NOT NULL, 
	fund_bps INTEGER NOT NULL, 
	costs_bps INTEGER NOT NULL, 
	social_bps INTEGER NOT NULL, 
	PRIMARY KEY (community_id, version), 
	FOREIGN KEY(community_id) REFERENCES communities (id) ON DELETE CASCADE
);

CREATE TABLE suppliers_communities (
	supplier_id VARCHAR(128) NOT NULL, 
	community_id VARCHAR(128) NOT NULL, 
	PRIMARY KEY (supplier_id, community_id), 
	FOREIGN KEY(supplier_id) REFERENCES suppliers (id) ON DELETE CASCADE, 
	FOREIGN KEY(community_id) REFERENCES communities (id) ON DELETE CASCADE
);

CREATE TABLE users_communities (
	user_id VARCHAR(128) NOT NULL, 
	community_id VARCHAR(128) NOT NULL, 
	wallet VARCHAR(42) NOT NULL, 
	member_role VARCHAR(32) NOT NULL, 
	joined_at DATETIME, 
	left_at DATETIME, 
	active BOOLEAN NOT NULL, 
	PRIMARY KEY (user_id, community_id), 
	CONSTRAINT uq_wallet_per_community UNIQUE (community_id, wallet), 
	FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE, 
	FOREIGN KEY(community_id) REFERENCES communities (id) ON DELETE CASCADE
);

CREATE TABLE users_roles (
	user_id VARCHAR(128) NOT NULL, 
	role_id INTEGER NOT NULL, 
	community_id VARCHAR(128) NOT NULL, 
	PRIMARY KEY (user_id, role_id, community_id), 
	FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE, 
	FOREIGN KEY(role_id) REFERENCES roles (id), 
	FOREIGN KEY(community_id) REFERENCES communities (id) ON DELETE CASCADE
);

CREATE TABLE clustergroups_idx (
	clustergroup_id VARCHAR(128) NOT NULL, 
	position INTEGER NOT NULL, 
	item VARCHAR(128) NOT NULL, 
	cluster_idx INTEGER NOT NULL, 
	PRIMARY KEY (clustergroup_id, position), 
	FOREIGN KEY(clustergroup_id) REFERENCES clustergroups (id) ON DELETE CASCADE
);

CREATE TABLE clusters (
	id VARCHAR(128) NOT NULL, 
	clustergroup_id VARCHAR(128) NOT NULL, 
	idx INTEGER NOT NULL, 
	mean_curve JSON NOT NULL, 
	std_curve JSON NOT NULL, 
	cv FLOAT, 
	size INTEGER NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(clustergroup_id) REFERENCES clustergroups (id) ON DELETE CASCADE
);

CREATE TABLE derivedtimeseries_schedules (
	derivedtimeseries_id VARCHAR(128) NOT NULL, 
	refresh_cron VARCHAR(64) NOT NULL, 
	last_refresh DATETIME, 
	next_refresh DATETIME, 
	PRIMARY KEY (derivedtimeseries_id), 
	FOREIGN KEY(derivedtimeseries_id) REFERENCES derivedtimeseries (id) ON DELETE CASCADE
);

CREATE TABLE derivedtimeseries_values (
	derivedtimeseries_id VARCHAR(128) NOT NULL, 
	ts DATETIME NOT NULL, 
	value FLOAT, 
	filled_share FLOAT, 
	PRIMARY KEY (derivedtimeseries_id, ts), 
	FOREIGN KEY(derivedtimeseries_id) REFERENCES derivedtimeseries (id) ON DELETE CASCADE
);

CREATE TABLE device_perimeters (
	id INTEGER NOT NULL, 
	device_id VARCHAR(128) NOT NULL, 
	valid_from DATETIME, 
	valid_to DATETIME, 
	primary_substation VARCHAR(64) NOT NULL, 
	market_zone VARCHAR(16) NOT NULL, 
	region VARCHAR(64) NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(device_id) REFERENCES devices (id) ON DELETE CASCADE
);

CREATE TABLE flows (
	id VARCHAR(128) NOT NULL, 
	device_id VARCHAR(128) NOT NULL, 
	supplier_id VARCHAR(128) NOT NULL, 
	name VARCHAR(256), 
	channel VARCHAR(16) NOT NULL, 
	datasyntax VARCHAR(16) NOT NULL, 
	format_reference TEXT, 
	send_frequency VARCHAR(64), 
	send_cron VARCHAR(64), 
	measure_frequency VARCHAR(64), 
	measure_cron VARCHAR(64), 
	derogation_s INTEGER NOT NULL, 
	measurementtype VARCHAR(32) NOT NULL, 
	gdprclass VARCHAR(32) NOT NULL, 
	use_rights TEXT, 
	on_error VARCHAR(32) NOT NULL, 
	start_ts DATETIME, 
	end_ts DATETIME, 
	active BOOLEAN NOT NULL, 
	interval_s INTEGER NOT NULL, 
	value_kind VARCHAR(16) NOT NULL, 
	sign_convention VARCHAR(16) NOT NULL, 
	units JSON NOT NULL, 
	mapping JSON NOT NULL, 
	ts_format VARCHAR(64) NOT NULL, 
	timezone VARCHAR(64) NOT NULL, 
	limits JSON NOT NULL, 
	syntax_options JSON NOT NULL, 
	counter_max_mwh INTEGER, 
	max_lateness_s INTEGER, 
	PRIMARY KEY (id), 
	FOREIGN KEY(device_id) REFERENCES devices (id) ON DELETE CASCADE, 
	FOREIGN KEY(supplier_id) REFERENCES suppliers (id)
);

CREATE TABLE plants (
	device_id VARCHAR(128) NOT NULL, 
	power_kw FLOAT NOT NULL, 
	plant_type VARCHAR(16) NOT NULL, 
	commissioned DATETIME NOT NULL, 
	capital_grant BOOLEAN NOT NULL, 
	grant_reduction_pct INTEGER, 
	PRIMARY KEY (device_id), 
	FOREIGN KEY(device_id) REFERENCES devices (id) ON DELETE CASCADE
);

CREATE TABLE clusters_days (
	cluster_id VARCHAR(128) NOT NULL, 
	day VARCHAR(10) NOT NULL, 
	PRIMARY KEY (cluster_id, day), 
	FOREIGN KEY(cluster_id) REFERENCES clusters (id) ON DELETE CASCADE
);

CREATE TABLE clusters_users (
	cluster_id VARCHAR(128) NOT NULL, 
	user_id VARCHAR(128) NOT NULL, 
	PRIMARY KEY (cluster_id, user_id), 
	FOREIGN KEY(cluster_id) REFERENCES clusters (id) ON DELETE CASCADE, 
	FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE
);

CREATE TABLE derivedtimeseries_sources (
	derivedtimeseries_id VARCHAR(128) NOT NULL, 
	flow_id VARCHAR(128) NOT NULL, 
	PRIMARY KEY (derivedtimeseries_id, flow_id), 
	FOREIGN KEY(derivedtimeseries_id) REFERENCES derivedtimeseries (id) ON DELETE CASCADE, 
	FOREIGN KEY(flow_id) REFERENCES flows (id) ON DELETE CASCADE
);

CREATE TABLE flows_communities (
	flow_id VARCHAR(128) NOT NULL, 
	community_id VARCHAR(128) NOT NULL, 
	accountconsumption INTEGER NOT NULL, 
	PRIMARY KEY (flow_id, community_id), 
	FOREIGN KEY(flow_id) REFERENCES flows (id) ON DELETE CASCADE, 
	FOREIGN KEY(community_id) REFERENCES communities (id) ON DELETE CASCADE
);

CREATE TABLE measurementstables (
	id INTEGER NOT NULL, 
	flow_id VARCHAR(128) NOT NULL, 
	table_name VARCHAR(128) NOT NULL, 
	description TEXT, 
	PRIMARY KEY (id), 
	FOREIGN KEY(flow_id) REFERENCES flows (id) ON DELETE CASCADE
);

CREATE TABLE signallabels (
	id INTEGER NOT NULL, 
	flow_id VARCHAR(128) NOT NULL, 
	label VARCHAR(128) NOT NULL, 
	quantity VARCHAR(64) NOT NULL, 
	unit VARCHAR(16) NOT NULL, 
	description TEXT, 
	PRIMARY KEY (id), 
	FOREIGN KEY(flow_id) REFERENCES flows (id) ON DELETE CASCADE
);
