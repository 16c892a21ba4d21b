"""tlsweep search_spaces."""
from search_spaces.domains import DOMAIN_KINDS, Domain
from search_spaces.sections import KNOWN_METRICS, PretrainSpec, ResourceSpec, SchedulerSpec, SearchSpec
from search_spaces.spec import Study, find_study, list_studies, load_study, study_from_dict

__all__ = ["DOMAIN_KINDS", "KNOWN_METRICS", "Domain", "PretrainSpec", "ResourceSpec", "SchedulerSpec", "SearchSpec",
           "Study", "find_study", "list_studies", "load_study", "study_from_dict"]
