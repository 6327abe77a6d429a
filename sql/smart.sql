-- SMART on FHIR: the resource types wildcard scopes expand to, and the client assertion
-- jtis already used (private_key_jwt, SMART Backend Services).

-- FHIR resource types that SMART wildcard scopes (system/*.read) expand to. Data, not code:
-- a DBA adds or removes types (e.g. for R5 or custom resources) with INSERT/DELETE.
CREATE TABLE oauth.fhir_resource_type (
    name text PRIMARY KEY CONSTRAINT fhir_resource_type_name CHECK (name ~ '^[A-Z][A-Za-z0-9]*$')
);


INSERT INTO oauth.fhir_resource_type (name) VALUES
    ('Account'), ('ActivityDefinition'), ('AdverseEvent'), ('AllergyIntolerance'),
    ('Appointment'), ('AppointmentResponse'), ('AuditEvent'), ('Basic'), ('Binary'),
    ('BiologicallyDerivedProduct'), ('BodyStructure'), ('Bundle'), ('CapabilityStatement'),
    ('CarePlan'), ('CareTeam'), ('CatalogEntry'), ('ChargeItem'), ('ChargeItemDefinition'),
    ('Claim'), ('ClaimResponse'), ('ClinicalImpression'), ('CodeSystem'), ('Communication'),
    ('CommunicationRequest'), ('CompartmentDefinition'), ('Composition'), ('ConceptMap'),
    ('Condition'), ('Consent'), ('Contract'), ('Coverage'), ('CoverageEligibilityRequest'),
    ('CoverageEligibilityResponse'), ('DetectedIssue'), ('Device'), ('DeviceDefinition'),
    ('DeviceMetric'), ('DeviceRequest'), ('DeviceUseStatement'), ('DiagnosticReport'),
    ('DocumentManifest'), ('DocumentReference'), ('EffectEvidenceSynthesis'), ('Encounter'),
    ('Endpoint'), ('EnrollmentRequest'), ('EnrollmentResponse'), ('EpisodeOfCare'),
    ('EventDefinition'), ('Evidence'), ('EvidenceVariable'), ('ExampleScenario'),
    ('ExplanationOfBenefit'), ('FamilyMemberHistory'), ('Flag'), ('Goal'), ('GraphDefinition'),
    ('Group'), ('GuidanceResponse'), ('HealthcareService'), ('ImagingStudy'), ('Immunization'),
    ('ImmunizationEvaluation'), ('ImmunizationRecommendation'), ('ImplementationGuide'),
    ('InsurancePlan'), ('Invoice'), ('Library'), ('Linkage'), ('List'), ('Location'),
    ('Measure'), ('MeasureReport'), ('Media'), ('Medication'), ('MedicationAdministration'),
    ('MedicationDispense'), ('MedicationKnowledge'), ('MedicationRequest'),
    ('MedicationStatement'), ('MedicinalProduct'), ('MedicinalProductAuthorization'),
    ('MedicinalProductContraindication'), ('MedicinalProductIndication'),
    ('MedicinalProductIngredient'), ('MedicinalProductInteraction'),
    ('MedicinalProductManufactured'), ('MedicinalProductPackaged'),
    ('MedicinalProductPharmaceutical'), ('MedicinalProductUndesirableEffect'),
    ('MessageDefinition'), ('MessageHeader'), ('MolecularSequence'), ('NamingSystem'),
    ('NutritionOrder'), ('Observation'), ('ObservationDefinition'), ('OperationDefinition'),
    ('OperationOutcome'), ('Organization'), ('OrganizationAffiliation'), ('Parameters'),
    ('Patient'), ('PaymentNotice'), ('PaymentReconciliation'), ('Person'), ('PlanDefinition'),
    ('Practitioner'), ('PractitionerRole'), ('Procedure'), ('Provenance'), ('Questionnaire'),
    ('QuestionnaireResponse'), ('RelatedPerson'), ('RequestGroup'), ('ResearchDefinition'),
    ('ResearchElementDefinition'), ('ResearchStudy'), ('ResearchSubject'), ('RiskAssessment'),
    ('RiskEvidenceSynthesis'), ('Schedule'), ('SearchParameter'), ('ServiceRequest'), ('Slot'),
    ('Specimen'), ('SpecimenDefinition'), ('StructureDefinition'), ('StructureMap'),
    ('Subscription'), ('Substance'), ('SubstanceNucleicAcid'), ('SubstancePolymer'),
    ('SubstanceProtein'), ('SubstanceReferenceInformation'), ('SubstanceSourceMaterial'),
    ('SubstanceSpecification'), ('SupplyDelivery'), ('SupplyRequest'), ('Task'),
    ('TerminologyCapabilities'), ('TestReport'), ('TestScript'), ('ValueSet'),
    ('VerificationResult'), ('VisionPrescription');

-- jti values of client assertions seen (RFC 7523 §3: no replay until they expire).
CREATE TABLE oauth.client_assertion_jti (
    client_id   text NOT NULL,
    jti         text NOT NULL,
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (client_id, jti)
);

CREATE INDEX client_assertion_jti_expires_at_idx ON oauth.client_assertion_jti (expires_at);
