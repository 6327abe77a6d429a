SELECT oauth.auth_token('client_credentials', 'bench-opaque', 'benchsecret', 'read');
