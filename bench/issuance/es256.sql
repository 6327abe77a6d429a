SELECT oauth.auth_token('client_credentials', 'bench-es256', 'benchsecret', 'read');
