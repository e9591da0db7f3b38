/*
 * Mosquitto 2.0 auth plugin (API v5): binds client ids to accounts.
 *
 * Why: Mosquitto lets any authenticated user take over the session of any client id (the old one is
 * disconnected, its queued messages are lost for it). Its own options cannot bind ids per account
 * (use_username_as_clientid allows one connection per account, clientid_prefixes is global).
 *
 * Rule: a client id belongs to the account whose name is the longest one among the accounts of
 * `plugin_opt_password_file` with  id == name  or  id starting with "name-". A CONNECT is refused
 * when the id does not belong to the connecting account; otherwise the plugin defers, and
 * Mosquitto's password_file checks the password as before. The password file is read at each
 * CONNECT (small; connects are rare), so registry changes apply without a reload.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

static mosquitto_plugin_id_t *plugin_id = NULL;
static char *accounts_path = NULL;

/* Length of `name` when it owns `client_id` ("name" or "name-..."), else 0. */
static size_t owns(const char *name, size_t len, const char *client_id)
{
	if(len == 0 || strncmp(client_id, name, len) != 0) return 0;
	if(client_id[len] == '\0' || client_id[len] == '-') return len;
	return 0;
}

/* The owner's name of `client_id` among the accounts (malloc'd), or NULL if none / unreadable. */
static char *owner_of(const char *client_id)
{
	FILE *fh = fopen(accounts_path, "r");
	char *line = NULL, *best = NULL;
	size_t cap = 0, best_len = 0;

	if(!fh) return NULL;
	while(getline(&line, &cap, fh) != -1){
		char *colon = strchr(line, ':');
		if(!colon) continue;
		size_t len = (size_t)(colon - line);
		if(owns(line, len, client_id) > best_len){
			free(best);
			best = strndup(line, len);
			best_len = len;
		}
	}
	free(line);
	fclose(fh);
	return best;
}

static int basic_auth(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_basic_auth *ed = event_data;
	const char *client_id = mosquitto_client_id(ed->client);
	(void)event; (void)userdata;

	if(ed->username == NULL) return MOSQ_ERR_PLUGIN_DEFER; /* anonymous: allow_anonymous decides */
	char *owner = client_id ? owner_of(client_id) : NULL;
	int ok = owner != NULL && strcmp(owner, ed->username) == 0;
	free(owner);
	if(!ok){
		mosquitto_log_printf(MOSQ_LOG_NOTICE,
			"clientid_prefix: refused client id '%s' for user '%s' (ids must be '%s' or start with '%s-')",
			client_id ? client_id : "", ed->username, ed->username, ed->username);
		return MOSQ_ERR_AUTH;
	}
	return MOSQ_ERR_PLUGIN_DEFER; /* the password_file checks the password */
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for(int i = 0; i < supported_version_count; i++){
		if(supported_versions[i] == 5) return 5;
	}
	return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
		struct mosquitto_opt *options, int option_count)
{
	(void)userdata;
	for(int i = 0; i < option_count; i++){
		if(strcmp(options[i].key, "password_file") == 0) accounts_path = strdup(options[i].value);
	}
	if(accounts_path == NULL){
		mosquitto_log_printf(MOSQ_LOG_ERR, "clientid_prefix: plugin_opt_password_file is required");
		return MOSQ_ERR_INVAL;
	}
	plugin_id = identifier;
	return mosquitto_callback_register(plugin_id, MOSQ_EVT_BASIC_AUTH, basic_auth, NULL, NULL);
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
	(void)userdata; (void)options; (void)option_count;
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_BASIC_AUTH, basic_auth, NULL);
	free(accounts_path);
	accounts_path = NULL;
	return MOSQ_ERR_SUCCESS;
}
