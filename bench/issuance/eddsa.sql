SELECT oauth.auth_token('client_credentials', 'bench-eddsa', 'benchsecret', 'read');
